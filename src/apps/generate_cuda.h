// `subq generate --device cuda`: the prompt and the generated text on stdout, timings on stderr, as the
// CPU path. Built only with the CUDA backend (CMake drops generate_cuda.cc otherwise).
#pragma once
#include <string>
#include <vector>

#include "apps/common.h"
#include "model/sampler.h"

namespace subq {

// "" when `--device cuda` can run here, else why not ("no CUDA device: ...").
std::string CudaUnavailableReason();
// Prefill of `ids` and up to max_tokens new tokens on the GPU (greedy on the device when temperature is 0).
int GenerateOnCuda(const LoadedModel& lm, const std::vector<int>& ids, int max_tokens, const SamplerConfig& sc,
                   double load_s);

}  // namespace subq
