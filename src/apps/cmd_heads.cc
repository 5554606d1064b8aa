// subq heads: rank a teacher's attention heads for retrieval-aware distillation (eval/head_ranking.h).
//   subq heads --teacher T [--probe kv-retrieval] [--n N] [--seed S] --out heads.json   ablation ranking
//   subq heads --teacher T --random [--seed S] --out heads.json                        the random control
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "eval/head_ranking.h"

namespace subq {
namespace {

struct HeadsOptions {
  std::string teacher, tokenizer, out;
  ProbeOptions probe;
  int batch_tokens = 2048;
  bool random = false, no_check_weights = false;
};

Result<HeadRanking> Rank(const HeadsOptions& o, const LoadedModel& lm) {
  if (o.random) return RandomHeadRanking(*lm.model, o.probe.seed);
  SUBQ_ASSIGN_OR_RETURN(std::vector<ProbeExample> examples, GenerateProbe(o.probe.spec, o.probe.n, o.probe.seed));
  SUBQ_ASSIGN_OR_RETURN(std::vector<TokenizedProbe> probes, TokenizeProbes(examples, *lm.tokenizer));
  const auto t0 = std::chrono::steady_clock::now();
  return RankHeadsByAblation(*lm.model, probes, o.batch_tokens, [&](int done, int total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "\rheads: %d/%d scoring passes  %.1f s", done, total, s);
    if (done == total) std::fprintf(stderr, "\n");
  });
}

int RunHeads(const HeadsOptions& o) {
  auto lm = LoadModel(o.teacher, o.tokenizer, /*load_tokenizer=*/!o.random, /*chunk=*/0, !o.no_check_weights);
  if (!lm.ok()) return ReportError(lm.status());
  auto r = Rank(o, *lm);
  if (!r.ok()) return ReportError(r.status());
  nlohmann::json j = HeadRankingJson(*r);
  j["teacher"] = o.teacher;
  if (!o.random) {
    j["probe"] = ProbeSpecJson(o.probe.spec);
    j["n"] = o.probe.n;
    j["seed"] = o.probe.seed;
  }
  std::ofstream f(o.out, std::ios::binary | std::ios::trunc);
  if (!f) return ReportError(Errorf("{}: cannot open for writing", o.out));
  f << j.dump(2) << '\n';
  f.flush();
  if (!f) return ReportError(Errorf("{}: write failed (disk full?)", o.out));
  if (r->measured) {
    std::printf("baseline %s accuracy %.4f, answer loss %.4f; top heads (layer, head, accuracy drop, loss increase):\n",
                o.probe.spec.name.c_str(), r->baseline.accuracy(), r->baseline.answer_nll);
    for (size_t i = 0; i < r->heads.size() && i < 10; ++i)
      std::printf("  %2zu. (%d, %d)  %+.4f  %+.4f\n", i + 1, r->heads[i].layer, r->heads[i].head,
                  r->heads[i].accuracy_drop, r->heads[i].loss_increase);
  }
  std::printf("wrote %s (%zu heads, %s ranking)\n", o.out.c_str(), r->heads.size(), r->method.c_str());
  return 0;
}

}  // namespace

void AddHeadsCommand(CLI::App& app) {
  auto o = std::make_shared<HeadsOptions>();
  CLI::App* c = app.add_subcommand(
      "heads", "Rank a teacher's attention heads by the probe accuracy drop when each is zeroed (or at random)");
  c->add_option("--teacher", o->teacher, "teacher model path")->required();
  c->add_option("--tokenizer", o->tokenizer, "tokenizer file");
  c->add_option("--out", o->out, "heads.json to write")->required();
  AddProbeOptions(c, &o->probe, /*required=*/false);
  c->add_flag("--random", o->random, "the control: a random order of the heads drawn from --seed (no probe runs)");
  c->add_option("--batch-tokens", o->batch_tokens, "tokens per Forward call (default 2048)")->check(CLI::PositiveNumber);
  AddNoCheckWeightsFlag(c, &o->no_check_weights);
  c->callback([o] { ExitCode() = RunHeads(*o); });
}

}  // namespace subq
