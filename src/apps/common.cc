#include "apps/common.h"
#ifdef SUBQ_HAVE_CUDA
#include "apps/cuda_device.h"
#endif

#include <cstdio>
#include <sstream>

#include "io/tensor_check.h"

namespace subq {

void AddStateDtypeOption(CLI::App* c, std::string* state_dtype) {
  c->add_option("--state-dtype", *state_dtype, "recurrent state precision (compute stays f32)")
      ->check(CLI::IsMember({"f32", "bf16"}));
}

Result<LoadedModel> LoadModel(const std::string& model_path, const std::string& tokenizer_path, bool load_tokenizer,
                              int chunk, bool check_weights, const std::string& state_dtype) {
  LoadedModel lm;
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(model_path));
  if (check_weights) SUBQ_RETURN_IF_ERROR(CheckTensorsFinite(ck.tensors));
  lm.ckpt = std::make_unique<Checkpoint>(std::move(ck));
  if (state_dtype != "f32" && state_dtype != "bf16") return Errorf("--state-dtype must be f32 or bf16");
  lm.ckpt->config.bf16_state = state_dtype == "bf16";
  if (chunk > 0) {
    ModelConfig& c = lm.ckpt->config;
    c.mamba2.chunk_size = c.dm2.chunk_size = c.mamba3.chunk_size = c.gdn.chunk_size = chunk;
  }
  SUBQ_ASSIGN_OR_RETURN(lm.model, Model::FromCheckpoint(*lm.ckpt));
  if (load_tokenizer) {
    if (!tokenizer_path.empty()) {
      SUBQ_ASSIGN_OR_RETURN(lm.tokenizer, LoadTokenizer(tokenizer_path));
    } else {
      SUBQ_ASSIGN_OR_RETURN(lm.tokenizer, TokenizerForCheckpoint(*lm.ckpt));
    }
    const int tv = lm.tokenizer->vocab_size(), mv = lm.model->config().vocab_size;
    if (tv > mv)
      return Errorf("{}: tokenizer has {} tokens but model {} has a vocabulary of {}", lm.tokenizer->name(), tv,
                    model_path, mv);
  }
  return lm;
}

void AddNoCheckWeightsFlag(CLI::App* cmd, bool* no_check_weights) {
  cmd->add_flag("--no-check-weights", *no_check_weights, "load weights holding NaN/Inf without an error");
}

std::string ContextLimitText(const Model& model) {
  return model.has_attention() ? fmt::format("{} tokens (max_seq_len; attention layers)", model.context_limit())
                               : std::string("unlimited (state is constant)");
}

Result<ModeSchedule> ModeScheduleFor(const Model& model, const std::string& spec, int prompt_len) {
  bool oryx = false;
  for (const auto& l : model.config().layers) oryx |= l.mixer == MixerKind::kOryx;
  if (!oryx) return Errorf("--mode-schedule: the model has no oryx (multi-mixer) layers");
  return ModeSchedule::Parse(spec, prompt_len);
}

Result<int64_t> FitContextLimit(const Model& model, int64_t tokens, const std::string& what, bool allow_longer) {
  const int64_t limit = model.context_limit();
  if (tokens <= limit) return tokens;
  const std::string msg = fmt::format("{} is {} tokens, beyond the model's context limit of {} (max_seq_len)", what,
                                      tokens, limit);
  if (!allow_longer) return Errorf("{}; pass --allow-longer to stop at the limit instead", msg);
  std::fprintf(stderr, "subq: warning: %s; stopping at the limit (--allow-longer)\n", msg.c_str());
  return limit;
}

void AddProbeOptions(CLI::App* c, ProbeOptions* o, bool required) {
  auto* name = c->add_option("--probe", o->spec.name, "synthetic probe: kv-retrieval, mqar, parity or modular")
                   ->check(CLI::IsMember(ProbeNames()));
  if (required) name->required();
  c->add_option("--n", o->n, "probe examples (default 100)")->check(CLI::Range(int64_t{1}, int64_t{10'000'000}));
  c->add_option("--seed", o->seed, "probe generator seed (default 0)");
  c->add_option("--pairs", o->spec.pairs, "kv-retrieval, mqar: key-value pairs per example (default 20)");
  c->add_option("--queries", o->spec.queries, "mqar: keys asked per example (default 8)");
  c->add_option("--length", o->spec.length, "parity, modular: terms per example (default 16)");
  c->add_option("--modulus", o->spec.modulus, "modular: the modulus (default 5)");
}

Status RequireDevice(const std::string& device, const std::string& state_dtype) {
  if (device == "cpu") return Status::Ok();
  if (device != "cuda") return Errorf("--device {}: expected cpu or cuda", device);
#ifdef SUBQ_HAVE_CUDA
  if (const std::string why = CudaUnavailableReason(); !why.empty()) return Status::Error(why);
#else
  return Errorf("no CUDA device: this subq was built without the CUDA backend (no nvcc at configure time)");
#endif
  if (state_dtype != "f32") return Errorf("--device cuda keeps recurrent state in f32 (no --state-dtype {})", state_dtype);
  return Status::Ok();
}

int ReportError(const Status& s) {
  std::fprintf(stderr, "subq: error: %s\n", s.message().c_str());
  return 1;
}

Result<std::vector<int>> ParseIds(const std::string& s) {
  std::vector<int> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t used = 0;
      int v = std::stoi(item, &used);
      if (used != item.size()) return Errorf("bad token id '{}'", item);
      ids.push_back(v);
    } catch (const std::exception&) {
      return Errorf("bad token id '{}'", item);
    }
  }
  if (ids.empty()) return Errorf("no token ids given");
  return ids;
}

}  // namespace subq
