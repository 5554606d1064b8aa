// Retrieval-aware head ranking (SPEC section 6, issue 10 item 3): zero each attention head's output in
// turn (Workspace::SetZeroedHeads: a per-layer head mask in the forward, no copy of the model), score a
// probe, and rank heads by the accuracy drop against the unablated model; ties (e.g. a teacher whose
// accuracy is 0) are broken by the increase of the answer tokens' loss, then by (layer, head).
// The random control lists the same heads in an order drawn from a seed.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/probe_score.h"

namespace subq {

struct HeadScore {
  int layer = 0, head = 0;
  int64_t answers_correct = 0;  // with this head zeroed
  double accuracy = 0, answer_nll = 0;
  double accuracy_drop = 0, loss_increase = 0;  // baseline minus ablated / ablated minus baseline
};

struct HeadRanking {
  std::string method;      // "ablation" or "random"
  uint64_t seed = 0;       // random: the seed of the order
  bool measured = false;   // ablation: baseline and per-head scores are filled in
  ProbeResult baseline;
  std::vector<HeadScore> heads;  // best first
};

// Every (layer, head) of the model's attention layers, layer-major. Empty for a model without any.
std::vector<std::pair<int, int>> AttentionHeads(const Model& model);

// Scores the probe once unablated and once per head with only that head zeroed, then sorts.
// progress(done, total) is called after each scoring pass when given. Errors: no attention layer,
// or a scoring error.
Result<HeadRanking> RankHeadsByAblation(const Model& model, const std::vector<TokenizedProbe>& probes,
                                        int batch_tokens = 2048,
                                        const std::function<void(int, int)>& progress = {});
// The control: the same heads in a random order (ProbeRng with `seed`); nothing is measured.
Result<HeadRanking> RandomHeadRanking(const Model& model, uint64_t seed);

// {"method", "seed" (random), "baseline" (ablation), "heads": [{"rank", "layer", "head", and for
// ablation "accuracy", "accuracy_drop", "answer_nll", "loss_increase"}]}; callers add the run's context.
nlohmann::json HeadRankingJson(const HeadRanking& r);

}  // namespace subq
