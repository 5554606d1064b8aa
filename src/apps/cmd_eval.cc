// subq eval: sliding-window perplexity of a model over a text file (--text), its accuracy on a synthetic
// probe (--probe: exact match of the greedy answer tokens, with a 95% Wilson interval), or multiple-choice
// accuracy as lm-evaluation-harness scores it (--choices JSONL: acc, acc_norm).
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
#include "eval/continuation_scoring.h"
#include "eval/perplexity.h"
#include "eval/probe_score.h"
#include "eval/text_data.h"
#ifdef SUBQ_HAVE_CUDA
#include "apps/cuda_device.h"
#endif

namespace subq {
namespace {

struct EvalOptions {
  std::string model, tokenizer, text, choices, delimiter = " ", state_dtype = "f32", device = "cpu";
  std::string mode_schedule;
  int attention_before_answer = -1;
  bool json = false, no_check_weights = false, allow_longer = false;
  int window = 0, stride = 0, piece = -1;
  int64_t max_tokens = 0;
  ProbeOptions probe;
  int batch_tokens = 2048;
};

int RunProbeEval(const EvalOptions& o) {
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/true, /*chunk=*/0, !o.no_check_weights, o.state_dtype);
  if (!lm.ok()) return ReportError(lm.status());
  auto examples = GenerateProbe(o.probe.spec, o.probe.n, o.probe.seed);
  if (!examples.ok()) return ReportError(examples.status());
  auto probes = TokenizeProbes(*examples, *lm->tokenizer);
  if (!probes.ok()) return ReportError(probes.status());
  Workspace ws(*lm->model, ProbeWorkspaceTokens(*probes, o.batch_tokens));
  auto r = ScoreProbe(*lm->model, *probes, ws, o.attention_before_answer);
  if (!r.ok()) return ReportError(r.status());
  const Interval ci = r->ci95();
  if (o.json) {
    nlohmann::json j = ProbeResultJson(*r);
    j["model"] = o.model;
    j["probe"] = ProbeSpecJson(o.probe.spec);
    j["n"] = o.probe.n;
    j["seed"] = o.probe.seed;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s: accuracy %.4f (%lld/%lld answers), 95%% CI [%.4f, %.4f]; answer loss %.4f nats/token over "
                "%lld tokens\n",
                o.probe.spec.name.c_str(), r->accuracy(), static_cast<long long>(r->answers_correct),
                static_cast<long long>(r->answers), ci.low, ci.high, r->answer_nll,
                static_cast<long long>(r->answer_tokens));
  }
  return 0;
}

// --choices: multiple-choice accuracy as lm-evaluation-harness computes it (eval/continuation_scoring.h).
int RunChoices(const EvalOptions& o) {
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/true, /*chunk=*/0, !o.no_check_weights, o.state_dtype);
  if (!lm.ok()) return ReportError(lm.status());
  auto items = ReadChoiceJsonl(o.choices);
  if (!items.ok()) return ReportError(items.status());
  ScoringOptions so;
  so.batch_tokens = o.batch_tokens;
  auto acc = ScoreChoices(*lm->model, *lm->tokenizer, *items, o.delimiter, so);
  if (!acc.ok()) return ReportError(acc.status());
  if (o.json) {
    const nlohmann::json j = {{"model", o.model}, {"choices", o.choices}, {"items", acc->items},
                              {"acc", acc->acc},   {"acc_norm", acc->acc_norm}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("acc %.4f  acc_norm %.4f  over %d items\n", acc->acc, acc->acc_norm, acc->items);
  }
  return 0;
}

int RunEval(const EvalOptions& o) {
  if (Status d = RequireDevice(o.device, o.state_dtype); !d.ok()) return ReportError(d);
  if (!o.choices.empty()) {
    if (o.device != "cpu") return ReportError(Errorf("eval --choices runs on the CPU engine (drop --device {})", o.device));
    return RunChoices(o);
  }
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/true, /*chunk=*/0, !o.no_check_weights, o.state_dtype);
  if (!lm.ok()) return ReportError(lm.status());
  // With a bf16 state, also score the f32-state model (same weights) to report the change.
  std::unique_ptr<Model> f32_model;
  if (lm->ckpt->config.bf16_state) {
    Checkpoint ck = *lm->ckpt;
    ck.config.bf16_state = false;
    auto m = Model::FromCheckpoint(ck);
    if (!m.ok()) return ReportError(m.status());
    f32_model = std::move(*m);
  }
  auto ids = TokenizeTextFile(o.text, *lm->tokenizer);
  if (!ids.ok()) return ReportError(ids.status());
  std::vector<int> tokens = std::move(*ids);
  if (o.max_tokens > 0 && static_cast<int64_t>(tokens.size()) > o.max_tokens) tokens.resize(o.max_tokens);
  auto fit = FitContextLimit(*lm->model, o.window > 0 ? o.window : std::min(lm->model->config().max_seq_len, 512),
                             "--window", o.allow_longer);
  if (!fit.ok()) return ReportError(fit.status());
  const int window = static_cast<int>(*fit);
  const int stride = o.stride > 0 ? o.stride : std::max(1, window / 2);
  // A bf16 state matters where it is stored between calls: by default score it on the decode path.
  const int piece = o.piece >= 0 ? o.piece : (f32_model ? 1 : 0);
  ModeSchedule modes;
  if (!o.mode_schedule.empty()) {
    if (o.device != "cpu") return ReportError(Errorf("--mode-schedule runs on the CPU engine (drop --device {})", o.device));
    auto ms = ModeScheduleFor(*lm->model, o.mode_schedule, -1);
    if (!ms.ok()) return ReportError(ms.status());
    modes = std::move(*ms);
  }
  const MixerMode fallback =
      lm->model->config().oryx.default_mode == "attention" ? MixerMode::kAttention : MixerMode::kRecurrent;
  const double attention_fraction = static_cast<double>(modes.Count(MixerMode::kAttention, 0, window, fallback)) / window;
  std::unique_ptr<LogitsSource> source = LogitsOf(*lm->model, piece > 0 ? piece : window, modes);
#ifdef SUBQ_HAVE_CUDA
  if (o.device == "cuda") {
    auto s = CudaLogitsSource(*lm, window, piece > 0 ? piece : window);
    if (!s.ok()) return ReportError(s.status());
    source = std::move(*s);
  }
#endif
  auto t0 = std::chrono::steady_clock::now();
  auto r = Perplexity(*source, tokens, window, stride, [&](int64_t done, int64_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "\reval: %lld/%lld tokens  %.0f tok/s", static_cast<long long>(done),
                 static_cast<long long>(total), done / std::max(s, 1e-9));
  }, piece);
  std::fprintf(stderr, "\n");
  if (!r.ok()) return ReportError(r.status());
  if (!std::isfinite(r->perplexity))
    return ReportError(Errorf("perplexity is {}: the model produced non-finite logits", r->perplexity));
  double f32_ppl = 0.0;
  if (f32_model) {
    auto r32 = Perplexity(*f32_model, tokens, window, stride, nullptr, piece);
    if (!r32.ok()) return ReportError(r32.status());
    f32_ppl = r32->perplexity;
  }
  if (o.json) {
    nlohmann::json j = {{"model", o.model}, {"text", o.text},     {"perplexity", r->perplexity},
                        {"nll", r->nll},    {"tokens", r->tokens}, {"window", window},
                        {"stride", stride}, {"state_dtype", o.state_dtype}, {"piece", piece},
                        {"device", o.device}};
    if (!o.mode_schedule.empty()) {
      j["mode_schedule"] = modes.ToString();
      j["attention_fraction"] = attention_fraction;  // of each window's positions
    }
    if (f32_model) {
      j["perplexity_f32_state"] = f32_ppl;
      j["perplexity_change"] = r->perplexity - f32_ppl;
    }
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity %.4f over %lld tokens (window %d, stride %d)\n", r->perplexity,
                static_cast<long long>(r->tokens), window, stride);
    if (f32_model)
      std::printf("recurrent state bf16: perplexity %.4f vs %.4f with f32 state (change %+.4f, %+.3f%%)\n",
                  r->perplexity, f32_ppl, r->perplexity - f32_ppl, 100.0 * (r->perplexity / f32_ppl - 1.0));
  }
  return 0;
}

}  // namespace

void AddEvalCommand(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* c = app.add_subcommand(
      "eval", "Perplexity over a text file (sliding window), accuracy on a probe, or multiple-choice accuracy");
  c->add_option("--model", o->model, "model path")->required();
  c->add_option("--tokenizer", o->tokenizer, "tokenizer file");
  auto* text = c->add_option("--text", o->text, "plain-text file (documents may be separated by <|endoftext|>)");
  auto* choices = c->add_option("--choices", o->choices,
                                "JSONL of {context, endings, label}: acc and acc_norm as lm-eval's multiple_choice");
  text->excludes(choices);
  c->add_option("--delimiter", o->delimiter, "with --choices: text between context and ending (default \" \")");
  c->add_flag("--json", o->json, "print one JSON object");
  c->add_option("--window", o->window, "tokens per window (default min(max_seq_len, 512))")->check(CLI::PositiveNumber);
  c->add_option("--stride", o->stride, "window stride (default window/2)")->check(CLI::PositiveNumber);
  c->add_option("--max-tokens", o->max_tokens, "score at most this many tokens")->check(CLI::NonNegativeNumber);
  AddStateDtypeOption(c, &o->state_dtype);
  c->add_option("--piece", o->piece,
                "feed each window in pieces of this many tokens (0: whole window; default 1 with a bf16 state)")
      ->check(CLI::NonNegativeNumber);
  c->add_flag("--allow-longer", o->allow_longer, "cap a --window beyond the model's context limit at the limit (warning)");
  AddNoCheckWeightsFlag(c, &o->no_check_weights);
  AddProbeOptions(c, &o->probe, /*required=*/false);
  c->get_option("--probe")->excludes(text);
  c->get_option("--probe")->excludes(choices);
  c->add_option("--batch-tokens", o->batch_tokens, "probe, choices: tokens per Forward call (default 2048)")
      ->check(CLI::PositiveNumber);
  c->add_option("--mode-schedule", o->mode_schedule,
                "oryx models, --text: modes by position in each window, e.g. 'attention:0-16,recurrent:16-'");
  c->add_option("--attention-before-answer", o->attention_before_answer,
                "oryx models, --probe: attention mode for the N tokens before each answer and the answer, "
                "recurrent elsewhere")
      ->check(CLI::NonNegativeNumber);
  c->get_option("--attention-before-answer")->needs(c->get_option("--probe"));
  c->add_option("--device", o->device, "cpu or cuda (perplexity on the GPU)")->check(CLI::IsMember({"cpu", "cuda"}));
  c->callback([o, c] {
    if (c->count("--probe") > 0) {
      ExitCode() = o->device == "cpu" ? RunProbeEval(*o)
                                      : ReportError(Errorf("eval --probe runs on the CPU engine (drop --device {})", o->device));
    } else if (c->count("--text") > 0 || c->count("--choices") > 0) {
      ExitCode() = RunEval(*o);
    } else {
      ExitCode() = ReportError(Errorf("eval needs --text FILE (perplexity), --probe NAME (probe accuracy) or "
                                      "--choices FILE.jsonl (multiple choice)"));
    }
  });
}

}  // namespace subq
