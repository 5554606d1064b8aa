// SSD for Mamba-2 and Discrete Mamba-2 (SPEC sections 2-3): the batched one-token state update, f32 state and
// math (the chunked prefill is in ssd_chunked.cu).
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "ops/cuda/ssd_common.cuh"

namespace subq::cuda {
namespace {

constexpr int kStepThreads = 256;

// Block (row, head, p-tile); each thread owns 4 consecutive n (float4) of RPT rows p, N/4 threads per p:
// all RPT state loads are issued before the first use (more bytes in flight at large batch).
template <int RPT>
__global__ void __launch_bounds__(kStepThreads) SsdStepKernel(SsdParams p, const float* x, int ldx, const float* b,
                                                              const float* c, int ldbc, const float* dt, int lddt,
                                                              float* states, const int* slot, float* y, int ldy) {
  const int r = blockIdx.x, h = blockIdx.y;
  const int tpr = p.N / 4, rows_per_pass = kStepThreads / tpr;
  const int p0 = blockIdx.z * rows_per_pass * RPT + threadIdx.x / tpr, n0 = (threadIdx.x % tpr) * 4;
  const int g = h / (p.H / p.G);
  float loga, xs;
  DecayOf(p, h, dt[static_cast<size_t>(r) * lddt + h], &loga, &xs);
  const float a = __expf(loga);
  const float4 bv = *reinterpret_cast<const float4*>(b + static_cast<size_t>(r) * ldbc + g * p.N + n0);
  const float4 cv = *reinterpret_cast<const float4*>(c + static_cast<size_t>(r) * ldbc + g * p.N + n0);
  float4* base = reinterpret_cast<float4*>(states + (static_cast<size_t>(slot[r]) * p.H + h) * p.P * p.N + n0);
  float4 s[RPT];
  float xv[RPT];
#pragma unroll
  for (int k = 0; k < RPT; ++k) {
    const int pi = p0 + k * rows_per_pass;
    if (pi < p.P) {
      s[k] = base[static_cast<size_t>(pi) * p.N / 4];
      xv[k] = x[static_cast<size_t>(r) * ldx + h * p.P + pi];
    }
  }
#pragma unroll
  for (int k = 0; k < RPT; ++k) {
    const int pi = p0 + k * rows_per_pass;
    float yv = 0.0f;
    if (pi < p.P) {
      const float X = xv[k] * xs;
      s[k].x = a * s[k].x + X * bv.x;
      s[k].y = a * s[k].y + X * bv.y;
      s[k].z = a * s[k].z + X * bv.z;
      s[k].w = a * s[k].w + X * bv.w;
      base[static_cast<size_t>(pi) * p.N / 4] = s[k];
      yv = s[k].x * cv.x + s[k].y * cv.y + s[k].z * cv.z + s[k].w * cv.w;
    }
    for (int o = tpr / 2; o > 0; o >>= 1) yv += __shfl_xor_sync(0xffffffffu, yv, o);
    if (pi < p.P && threadIdx.x % tpr == 0) y[static_cast<size_t>(r) * ldy + h * p.P + pi] = yv + p.D[h] * xv[k];
  }
}

}  // namespace

void SsdStep(cudaStream_t s, const SsdParams& p, int rows, const float* x, int ldx, const float* b,
             const float* c, int ldbc, const float* dt, int lddt, float* states, const int* slot, float* y, int ldy) {
  if (rows == 0) return;
  const int tpr = p.N / 4, rows_per_block = kStepThreads / tpr;
  if (p.N % 4 != 0 || tpr > 32 || (tpr & (tpr - 1)) != 0) {
    std::fprintf(stderr, "SsdStep: state size %d unsupported (need N/4 a power of two <= 32)\n", p.N);
    std::abort();
  }
  if (reinterpret_cast<uintptr_t>(b) % 16 != 0 || reinterpret_cast<uintptr_t>(c) % 16 != 0 || ldbc % 4 != 0) {
    std::fprintf(stderr, "SsdStep: B/C rows must be 16-byte aligned (ldbc %d)\n", ldbc);
    std::abort();
  }
  // Small batches spread each head over more blocks; large ones give each thread 4 rows of state.
  if (rows >= 16) {
    const dim3 grid(rows, p.H, CeilDiv(p.P, rows_per_block * 4));
    SsdStepKernel<4><<<grid, kStepThreads, 0, s>>>(p, x, ldx, b, c, ldbc, dt, lddt, states, slot, y, ldy);
  } else {
    const dim3 grid(rows, p.H, CeilDiv(p.P, rows_per_block));
    SsdStepKernel<1><<<grid, kStepThreads, 0, s>>>(p, x, ldx, b, c, ldbc, dt, lddt, states, slot, y, ldy);
  }
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
