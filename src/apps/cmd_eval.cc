// subq eval: sliding-window perplexity of a model over a text file.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "eval/perplexity.h"
#include "eval/text_data.h"

namespace subq {
namespace {

struct EvalOptions {
  std::string model, tokenizer, text;
  bool json = false, no_check_weights = false, allow_longer = false;
  int window = 0, stride = 0;
  int64_t max_tokens = 0;
};

int RunEval(const EvalOptions& o) {
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/true, /*chunk=*/0, !o.no_check_weights);
  if (!lm.ok()) return ReportError(lm.status());
  auto ids = TokenizeTextFile(o.text, *lm->tokenizer);
  if (!ids.ok()) return ReportError(ids.status());
  std::vector<int> tokens = std::move(*ids);
  if (o.max_tokens > 0 && static_cast<int64_t>(tokens.size()) > o.max_tokens) tokens.resize(o.max_tokens);
  auto fit = FitContextLimit(*lm->model, o.window > 0 ? o.window : std::min(lm->model->config().max_seq_len, 512),
                             "--window", o.allow_longer);
  if (!fit.ok()) return ReportError(fit.status());
  const int window = static_cast<int>(*fit);
  const int stride = o.stride > 0 ? o.stride : std::max(1, window / 2);
  auto t0 = std::chrono::steady_clock::now();
  auto r = Perplexity(*lm->model, tokens, window, stride, [&](int64_t done, int64_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "\reval: %lld/%lld tokens  %.0f tok/s", static_cast<long long>(done),
                 static_cast<long long>(total), done / std::max(s, 1e-9));
  });
  std::fprintf(stderr, "\n");
  if (!r.ok()) return ReportError(r.status());
  if (!std::isfinite(r->perplexity))
    return ReportError(Errorf("perplexity is {}: the model produced non-finite logits", r->perplexity));
  if (o.json) {
    nlohmann::json j = {{"model", o.model}, {"text", o.text},     {"perplexity", r->perplexity},
                        {"nll", r->nll},    {"tokens", r->tokens}, {"window", window},
                        {"stride", stride}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity %.4f over %lld tokens (window %d, stride %d)\n", r->perplexity,
                static_cast<long long>(r->tokens), window, stride);
  }
  return 0;
}

}  // namespace

void AddEvalCommand(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* c = app.add_subcommand("eval", "Perplexity of a model over a text file (sliding window)");
  c->add_option("--model", o->model, "model path")->required();
  c->add_option("--tokenizer", o->tokenizer, "tokenizer file");
  c->add_option("--text", o->text, "plain-text file (documents may be separated by <|endoftext|>)")->required();
  c->add_flag("--json", o->json, "print one JSON object");
  c->add_option("--window", o->window, "tokens per window (default min(max_seq_len, 512))")->check(CLI::PositiveNumber);
  c->add_option("--stride", o->stride, "window stride (default window/2)")->check(CLI::PositiveNumber);
  c->add_option("--max-tokens", o->max_tokens, "score at most this many tokens")->check(CLI::NonNegativeNumber);
  c->add_flag("--allow-longer", o->allow_longer, "cap a --window beyond the model's context limit at the limit (warning)");
  AddNoCheckWeightsFlag(c, &o->no_check_weights);
  c->callback([o] { ExitCode() = RunEval(*o); });
}

}  // namespace subq
