// The CUDA path of `subq generate` (cuda_device.h): weights uploaded once as bf16, one sequence in slot 0
// of a CudaRunner whose KV capacity is the prompt plus --max-tokens, decode steps through its graphs, next
// tokens picked on the device with the sampler's seeded stream.
#include <chrono>
#include <cstdio>

#include "apps/cuda_device.h"
#include "engine_cuda/cuda_runner.h"
#include "engine_cuda/host_tensors.h"

namespace subq {

std::string CudaUnavailableReason() { return cuda::DeviceUnavailableReason(); }

std::string CudaDeviceName() {
  cudaDeviceProp prop{};
  return cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? std::string(prop.name) : "cuda";
}

int GenerateOnCuda(const LoadedModel& lm, const std::vector<int>& ids, int max_tokens, const SamplerConfig& sc,
                   double load_s) {
  const ModelConfig& cfg = lm.ckpt->config;
  const Tokenizer& tok = *lm.tokenizer;
  auto tu = std::chrono::steady_clock::now();
  std::string err;
  auto model = cuda::CudaModel::Upload(cfg, cuda::FromStore(lm.ckpt->tensors), &err);
  if (!model) return ReportError(Status::Error(err));
  cuda::CudaRunner run(*model, 1, static_cast<int>(ids.size()) + max_tokens + 1, 512);
  const int slot = 0;
  run.SetSampler(slot, sc);
  const double upload_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tu).count();
  DecodeStream stream(tok, ids);
  auto tp = std::chrono::steady_clock::now();
  int next = run.Prefill(slot, ids.data(), static_cast<int>(ids.size()));
  const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count();
  auto td = std::chrono::steady_clock::now();
  int generated = 0;
  for (; generated < max_tokens; ++generated) {
    if (next < 0 || next >= cfg.vocab_size)
      return ReportError(Errorf("the model produced non-finite logits on the GPU (token {}); stopping", next));
    if (next == tok.eos_id() || next == cfg.eos_id) break;
    const std::string piece = stream.Next(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (generated + 1 == max_tokens) {
      ++generated;
      break;
    }
    int out = 0;
    run.Decode(1, &slot, &next, &out);
    next = out;
  }
  const double decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - td).count();
  std::fputc('\n', stdout);
  std::fprintf(stderr,
               "subq: load %.2fs, upload %.2fs | cuda prefill %zu tokens %.1f tok/s | decode %d tokens %.1f tok/s | "
               "state %.1f KiB\n",
               load_s, upload_s, ids.size(), ids.size() / std::max(prefill_s, 1e-9), generated,
               generated / std::max(decode_s, 1e-9), run.StateBytesUsed(slot) / 1024.0);
  return 0;
}

}  // namespace subq
