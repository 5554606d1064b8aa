// Shared device helpers of the CUDA ops: launch checks and warp/block reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cfloat>

#include "ops/cuda/cuda_ops.h"

#define SUBQ_CUDA_LAUNCH_CHECK() SUBQ_CUDA_CHECK(cudaGetLastError())

namespace subq::cuda {

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the total.
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float red[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < nw ? red[lane] : 0.0f;
  return WarpSum(t);
}
__device__ __forceinline__ float SiluF(float x) { return x / (1.0f + __expf(-x)); }
__device__ __forceinline__ float SoftplusF(float x) { return x > 20.0f ? x : log1pf(__expf(x)); }

inline int CeilDiv(long a, long b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace subq::cuda
