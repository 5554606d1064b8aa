// Device helper shared by the SSD kernels (ssd.cu: one-token update, ssd_chunked.cu: chunked prefill).
#pragma once
#include "ops/cuda/common.cuh"

namespace subq::cuda {

// Per-token decay and input scale of one head: a = exp(loga), X = x * xs.
__device__ __forceinline__ void DecayOf(const SsdParams& p, int h, float dt_raw, float* loga, float* xs) {
  if (p.dt_bias != nullptr) {
    const float dt = SoftplusF(dt_raw + p.dt_bias[h]);
    *loga = -__expf(p.A_log[h]) * dt;
    *xs = dt;
  } else {
    *loga = -SoftplusF(dt_raw);
    *xs = 1.0f;
  }
}

}  // namespace subq::cuda
