// subq sample: test-time scaling. N samples of one prompt decoded as one batch (the prompt is prefilled
// once and its state copied per sample), stopped at a wall-clock budget; with --vote, the majority
// answer extracted by --answer-regex (its first group, else the whole match) with the counts.
#include <chrono>
#include <cstdio>
#include <map>
#include <regex>

#include "apps/commands.h"
#include "apps/common.h"
#include "serve/engine.h"

namespace subq {
namespace {

struct SampleOptions {
  std::string model, tokenizer, prompt, answer_regex = "([0-9]+)";
  int n = 8, max_tokens = 128, threads = 0;
  double time_budget = 0;  // seconds; 0: none
  bool vote = false, no_bos = false;
  SamplerConfig sampler{0.8f, 0, 0.95f, 0};
};

int RunSample(const SampleOptions& o) {
  std::regex answer;
  try {
    answer = std::regex(o.answer_regex);
  } catch (const std::regex_error& e) {
    return ReportError(Errorf("--answer-regex '{}': {}", o.answer_regex, e.what()));
  }
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/true);
  if (!lm.ok()) return ReportError(lm.status());
  std::vector<int> ids = lm->tokenizer->Encode(o.prompt, !o.no_bos);
  if (ids.empty()) return ReportError(Errorf("the prompt encodes to no tokens"));
  serve::EngineOptions eo;
  eo.max_batch = o.n;
  eo.threads = o.threads;
  eo.cache_bytes = 0;
  serve::Engine engine(*lm->model, nullptr, *lm->tokenizer, eo);
  if (static_cast<int64_t>(ids.size()) + o.max_tokens > engine.max_context())
    return ReportError(Errorf("prompt ({} tokens) + --max-tokens ({}) exceed the context limit of {}", ids.size(),
                              o.max_tokens, engine.max_context()));
  serve::GenParams p;
  p.max_tokens = o.max_tokens;
  p.sampler = o.sampler;
  auto req = std::make_shared<serve::Request>(ids, p, o.n);
  const auto t0 = std::chrono::steady_clock::now();
  if (engine.Submit(req) != serve::Engine::Admission::kQueued) return ReportError(Errorf("engine refused the request"));
  std::vector<std::string> text(o.n);
  std::vector<bool> complete(o.n, false);
  int tokens = 0;
  for (int left = o.n; left > 0;) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.time_budget > 0 && elapsed >= o.time_budget) {
      req->Cancel();
      break;
    }
    auto e = req->Pop(20);
    if (!e) continue;
    if (!e->error.empty()) return ReportError(Errorf("generation failed: {}", e->error));
    text[e->choice] += e->text;
    tokens += static_cast<int>(e->tokens.size());
    if (!e->finish.empty()) {
      complete[e->choice] = e->finish != "cancelled";
      --left;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  engine.Shutdown();
  int done = 0;
  std::map<std::string, int> votes;
  for (int i = 0; i < o.n; ++i) {
    if (!complete[i]) continue;
    ++done;
    std::printf("--- sample %d\n%s%s\n", i, o.prompt.c_str(), text[i].c_str());
    std::smatch m;
    if (o.vote && std::regex_search(text[i], m, answer)) ++votes[m.size() > 1 ? m[1].str() : m[0].str()];
  }
  std::fprintf(stderr, "subq sample: %d of %d samples complete in %.2fs (%d tokens, %.1f tok/s)\n", done, o.n, secs,
               tokens, tokens / std::max(secs, 1e-9));
  if (o.vote) {
    std::string best;
    int best_n = 0;
    for (const auto& [a, c] : votes)
      if (c > best_n) best = a, best_n = c;
    std::printf("=== vote: %s (%d of %d complete samples)\n", best_n ? best.c_str() : "(no answer found)", best_n, done);
    for (const auto& [a, c] : votes) std::printf("    %s: %d\n", a.c_str(), c);
  }
  return 0;
}

}  // namespace

void AddSampleCommand(CLI::App& app) {
  auto o = std::make_shared<SampleOptions>();
  CLI::App* c = app.add_subcommand("sample", "N samples of a prompt as one batch, within a time budget, with voting");
  c->add_option("--model", o->model, "llama2.c .bin, .gguf, or a Hugging Face-style folder")->required();
  c->add_option("--tokenizer", o->tokenizer, "tokenizer file (default: the one beside/inside the model)");
  c->add_option("--prompt", o->prompt, "prompt text")->required();
  c->add_option("--n", o->n, "samples")->check(CLI::Range(1, 4096));
  c->add_option("--max-tokens", o->max_tokens, "tokens per sample")->check(CLI::Range(1, 1 << 20));
  c->add_option("--time-budget", o->time_budget, "stop after this many seconds (0: none)")->check(CLI::NonNegativeNumber);
  c->add_flag("--vote", o->vote, "print the majority answer over complete samples");
  c->add_option("--answer-regex", o->answer_regex, "regex whose first group (or match) is a sample's answer");
  c->add_option("--temperature", o->sampler.temperature, "sampling temperature")->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-p", o->sampler.top_p, "nucleus sampling mass")->check(CLI::Range(0.0, 1.0));
  c->add_option("--seed", o->sampler.seed, "random seed (sample i uses seed + i)");
  c->add_option("--threads", o->threads, "compute threads (0: all cores)")->check(CLI::NonNegativeNumber);
  c->add_flag("--no-bos", o->no_bos, "do not prepend the BOS token");
  c->callback([o] { ExitCode() = RunSample(*o); });
}

}  // namespace subq
