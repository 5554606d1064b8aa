// Head ablation ranking and its random control (see head_ranking.h).
#include "eval/head_ranking.h"

#include <algorithm>

namespace subq {

std::vector<std::pair<int, int>> AttentionHeads(const Model& model) {
  const ModelConfig& c = model.config();
  std::vector<std::pair<int, int>> heads;
  for (int l = 0; l < c.n_layers; ++l)
    if (c.layers[l].mixer == MixerKind::kAttention)
      for (int h = 0; h < c.attn.n_heads; ++h) heads.emplace_back(l, h);
  return heads;
}

Result<HeadRanking> RankHeadsByAblation(const Model& model, const std::vector<TokenizedProbe>& probes,
                                        int batch_tokens, const std::function<void(int, int)>& progress) {
  const std::vector<std::pair<int, int>> heads = AttentionHeads(model);
  if (heads.empty()) return Errorf("the model has no attention layer: no heads to rank");
  Workspace ws(model, ProbeWorkspaceTokens(probes, batch_tokens));
  HeadRanking r;
  r.method = "ablation";
  r.measured = true;
  const int total = static_cast<int>(heads.size()) + 1;
  SUBQ_ASSIGN_OR_RETURN(r.baseline, ScoreProbe(model, probes, ws));
  if (progress) progress(1, total);
  for (size_t i = 0; i < heads.size(); ++i) {
    const auto [layer, head] = heads[i];
    std::vector<uint8_t> zeroed(model.config().attn.n_heads, 0);
    zeroed[head] = 1;
    SUBQ_RETURN_IF_ERROR(ws.SetZeroedHeads(layer, std::move(zeroed)));
    auto scored = ScoreProbe(model, probes, ws);
    ws.ClearZeroedHeads();
    if (!scored.ok()) return scored.status();
    HeadScore s;
    s.layer = layer, s.head = head;
    s.answers_correct = scored->answers_correct;
    s.accuracy = scored->accuracy();
    s.answer_nll = scored->answer_nll;
    s.accuracy_drop = r.baseline.accuracy() - s.accuracy;
    s.loss_increase = s.answer_nll - r.baseline.answer_nll;
    r.heads.push_back(s);
    if (progress) progress(static_cast<int>(i) + 2, total);
  }
  // Counts, not accuracies, decide the first key: equal drops compare equal exactly.
  std::stable_sort(r.heads.begin(), r.heads.end(), [](const HeadScore& a, const HeadScore& b) {
    if (a.answers_correct != b.answers_correct) return a.answers_correct < b.answers_correct;
    if (a.loss_increase != b.loss_increase) return a.loss_increase > b.loss_increase;
    return a.layer != b.layer ? a.layer < b.layer : a.head < b.head;
  });
  return r;
}

Result<HeadRanking> RandomHeadRanking(const Model& model, uint64_t seed) {
  const std::vector<std::pair<int, int>> heads = AttentionHeads(model);
  if (heads.empty()) return Errorf("the model has no attention layer: no heads to rank");
  HeadRanking r;
  r.method = "random";
  r.seed = seed;
  for (const auto& [layer, head] : heads) r.heads.push_back(HeadScore{layer, head});
  ProbeRng rng(seed);
  rng.Shuffle(r.heads);
  return r;
}

nlohmann::json HeadRankingJson(const HeadRanking& r) {
  nlohmann::json j = {{"method", r.method}};
  if (r.method == "random") j["seed"] = r.seed;
  if (r.measured) j["baseline"] = ProbeResultJson(r.baseline);
  nlohmann::json heads = nlohmann::json::array();
  for (size_t i = 0; i < r.heads.size(); ++i) {
    const HeadScore& h = r.heads[i];
    nlohmann::json e = {{"rank", i + 1}, {"layer", h.layer}, {"head", h.head}};
    if (r.measured) {
      e["accuracy"] = h.accuracy;
      e["accuracy_drop"] = h.accuracy_drop;
      e["answer_nll"] = h.answer_nll;
      e["loss_increase"] = h.loss_increase;
    }
    heads.push_back(e);
  }
  j["heads"] = heads;
  return j;
}

}  // namespace subq
