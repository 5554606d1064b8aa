// The CUDA paths of the CLI: `subq generate|eval|bench --device cuda` on a CudaModel / CudaRunner
// (engine_cuda/). Built only with the CUDA backend (CMake drops the apps' *_cuda.cc files otherwise);
// RequireDevice (apps/common.h) is the one check every command makes first.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "apps/common.h"
#include "eval/bench.h"
#include "eval/perplexity.h"
#include "model/sampler.h"

namespace subq {

// "" when `--device cuda` can run here, else why not ("no CUDA device: ...").
std::string CudaUnavailableReason();
// The GPU's name ("NVIDIA H200"), for reports.
std::string CudaDeviceName();
// Prefill of `ids` and up to max_tokens new tokens on the GPU; tokens are picked on the device (greedy or
// the sampler's temperature / top-k / top-p with its seed).
int GenerateOnCuda(const LoadedModel& lm, const std::vector<int>& ids, int max_tokens, const SamplerConfig& sc,
                   double load_s);
// The model's weights on the GPU as a LogitsSource for `subq eval` (windows of up to `window` tokens,
// fed in pieces of at most `rows`).
Result<std::unique_ptr<LogitsSource>> CudaLogitsSource(const LoadedModel& lm, int window, int rows);
// The model's weights on the GPU as a BenchBackend for `subq bench` (prefill pieces of max_rows rows;
// memory_limit 0: the device's free memory).
Result<std::unique_ptr<BenchBackend>> CudaBenchBackend(const LoadedModel& lm, int max_rows, size_t memory_limit);

}  // namespace subq
