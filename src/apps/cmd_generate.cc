// subq generate: prompt -> text. stdout carries exactly the prompt followed by the generated text;
// logs and speed go to stderr.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "apps/common.h"
#include "model/sampler.h"
#ifdef SUBQ_HAVE_CUDA
#include "apps/cuda_device.h"
#endif

namespace subq {
namespace {

struct GenerateOptions {
  std::string model, tokenizer, prompt, state_dtype = "f32", mode_schedule;
  int max_tokens = 128;
  SamplerConfig sampler;
  bool no_bos = false, no_check_weights = false, allow_longer = false;
  std::string device = "cpu";
};

int RunGenerate(const GenerateOptions& o) {
  if (Status d = RequireDevice(o.device, o.state_dtype); !d.ok()) return ReportError(d);
  auto t0 = std::chrono::steady_clock::now();
  if (Status v = ValidateSamplerConfig(o.sampler); !v.ok()) return ReportError(v);
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/true, /*chunk=*/0, !o.no_check_weights, o.state_dtype);
  if (!lm.ok()) return ReportError(lm.status());
  const Model& model = *lm->model;
  const Tokenizer& tok = *lm->tokenizer;
  const ModelConfig& cfg = model.config();
  std::vector<int> ids = tok.Encode(o.prompt, !o.no_bos);
  if (ids.empty()) return ReportError(Errorf("the prompt encodes to no tokens (pass a prompt or drop --no-bos)"));
  auto fit = FitContextLimit(model, static_cast<int64_t>(ids.size()) + o.max_tokens, "prompt + --max-tokens",
                             o.allow_longer);
  if (!fit.ok()) return ReportError(fit.status());
  const int max_tokens = static_cast<int>(std::max<int64_t>(0, *fit - static_cast<int64_t>(ids.size())));
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  ModeSchedule modes;
  if (!o.mode_schedule.empty()) {
    if (o.device != "cpu") return ReportError(Errorf("--mode-schedule runs on the CPU engine (drop --device {})", o.device));
    auto ms = ModeScheduleFor(model, o.mode_schedule, static_cast<int>(ids.size()));
    if (!ms.ok()) return ReportError(ms.status());
    modes = std::move(*ms);
  }
  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  std::fflush(stdout);
  const int64_t need = static_cast<int64_t>(ids.size()) + max_tokens;
#ifdef SUBQ_HAVE_CUDA
  if (o.device == "cuda") return GenerateOnCuda(*lm, ids, max_tokens, o.sampler, load_s);
#endif
  auto seq_or = model.NewSequence(model.has_attention() ? static_cast<int>(need) : 0);
  if (!seq_or.ok()) return ReportError(seq_or.status());
  SequenceState seq = std::move(*seq_or);
  seq.modes = std::move(modes);
  Workspace ws(model, std::min<int>(static_cast<int>(ids.size()), 512));
  std::vector<float> logits(cfg.vocab_size);
  Sampler sampler(o.sampler);
  DecodeStream stream(tok, ids);

  auto tp = std::chrono::steady_clock::now();
  Status st = model.Forward(ids.data(), static_cast<int>(ids.size()), seq, ws, logits.data());
  if (!st.ok()) return ReportError(st);
  const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count();

  auto td = std::chrono::steady_clock::now();
  int generated = 0;
  for (; generated < max_tokens; ++generated) {
    if (st = CheckLogitsFinite(logits.data(), cfg.vocab_size); !st.ok()) return ReportError(st);
    int next = sampler.Sample(logits.data(), cfg.vocab_size);
    if (next == tok.eos_id() || next == cfg.eos_id) break;
    std::string piece = stream.Next(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (generated + 1 == max_tokens) { ++generated; break; }
    st = model.Forward(&next, 1, seq, ws, logits.data());
    if (!st.ok()) return ReportError(st);
  }
  const double decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - td).count();
  std::fputc('\n', stdout);
  std::fprintf(stderr,
               "subq: load %.2fs | prefill %zu tokens %.1f tok/s | decode %d tokens %.1f tok/s | state %.1f KiB\n",
               load_s, ids.size(), ids.size() / std::max(prefill_s, 1e-9), generated,
               generated / std::max(decode_s, 1e-9), seq.Bytes() / 1024.0);
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* c = app.add_subcommand("generate", "Generate text from a prompt");
  c->add_option("--model", o->model, "llama2.c .bin, .gguf, or a Hugging Face-style folder")->required();
  c->add_option("--tokenizer", o->tokenizer, "tokenizer file (default: the one beside/inside the model)");
  c->add_option("--prompt", o->prompt, "prompt text")->required();
  c->add_option("--max-tokens", o->max_tokens, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  c->add_option("--temperature", o->sampler.temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-k", o->sampler.top_k, "keep the k most likely tokens (0 = all)")->check(CLI::NonNegativeNumber);
  c->add_option("--top-p", o->sampler.top_p, "nucleus sampling mass")->check(CLI::Range(0.0, 1.0));
  c->add_option("--seed", o->sampler.seed, "random seed");
  c->add_flag("--no-bos", o->no_bos, "do not prepend the BOS token");
  AddStateDtypeOption(c, &o->state_dtype);
  c->add_flag("--allow-longer", o->allow_longer, "stop at the model's context limit instead of refusing (warning)");
  AddNoCheckWeightsFlag(c, &o->no_check_weights);
  c->add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  c->add_option("--mode-schedule", o->mode_schedule,
                "oryx models: 'prompt:attention,gen:recurrent', 'attention:0-512,recurrent:512-', 'recurrent'");
  c->callback([o] { ExitCode() = RunGenerate(*o); });
}

}  // namespace subq
