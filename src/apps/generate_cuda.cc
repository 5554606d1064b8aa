// The CUDA path of `subq generate` (generate_cuda.h): weights uploaded once as bf16, one sequence in slot
// 0 of a CudaRunner whose KV capacity is the prompt plus --max-tokens, decode steps through its graphs.
#include "apps/generate_cuda.h"

#include <chrono>
#include <cstdio>

#include "engine_cuda/cuda_runner.h"
#include "engine_cuda/host_tensors.h"

namespace subq {

std::string CudaUnavailableReason() { return cuda::DeviceUnavailableReason(); }

int GenerateOnCuda(const LoadedModel& lm, const std::vector<int>& ids, int max_tokens, const SamplerConfig& sc,
                   double load_s) {
  const ModelConfig& cfg = lm.ckpt->config;
  const Tokenizer& tok = *lm.tokenizer;
  auto tu = std::chrono::steady_clock::now();
  std::string err;
  auto model = cuda::CudaModel::Upload(cfg, cuda::FromStore(lm.ckpt->tensors), &err);
  if (!model) return ReportError(Status::Error(err));
  cuda::CudaRunner run(*model, 1, static_cast<int>(ids.size()) + max_tokens + 1, 512);
  const double upload_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tu).count();
  const bool greedy = sc.temperature <= 0.0f;
  Sampler sampler(sc);
  DecodeStream stream(tok, ids);
  std::vector<float> logits;
  auto tp = std::chrono::steady_clock::now();
  int next = run.Prefill(0, ids.data(), static_cast<int>(ids.size()), greedy ? nullptr : &logits);
  const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count();
  auto td = std::chrono::steady_clock::now();
  int generated = 0;
  const int slot = 0;
  for (; generated < max_tokens; ++generated) {
    if (!greedy) next = sampler.Sample(logits.data(), cfg.vocab_size);
    if (next == tok.eos_id() || next == cfg.eos_id) break;
    const std::string piece = stream.Next(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (generated + 1 == max_tokens) {
      ++generated;
      break;
    }
    int out = 0;
    run.Decode(1, &slot, &next, &out, greedy ? nullptr : &logits);
    next = out;
  }
  const double decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - td).count();
  std::fputc('\n', stdout);
  std::fprintf(stderr,
               "subq: load %.2fs, upload %.2fs | cuda prefill %zu tokens %.1f tok/s | decode %d tokens %.1f tok/s | "
               "state %.1f KiB\n",
               load_s, upload_s, ids.size(), ids.size() / std::max(prefill_s, 1e-9), generated,
               generated / std::max(decode_s, 1e-9), run.StateBytesPerSlot() / 1024.0);
  return 0;
}

}  // namespace subq
