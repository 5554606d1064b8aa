// Token sampling on the device (cuda_ops.h SampleTokens; model/sampler.cc is the CPU form): greedy, or
// temperature + top-k + top-p + inverse-CDF draw in descending-logit order, without sorting. Each
// threshold is found by a bitwise search over order-preserving 32-bit keys of the logits: the k-th largest
// key, the smallest key of the top-p prefix, and the key at which the descending cumulative mass first
// exceeds u * kept mass. Every probe is one pass over the row with a block reduction.
#include "ops/cuda/common.cuh"

namespace subq::cuda {
namespace {

constexpr int kThreads = 1024;

// Larger float -> larger unsigned key (negative floats reversed).
__device__ __forceinline__ unsigned Key(float f) {
  const unsigned b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ float BlockMax(float v) {
  __shared__ float red[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  return WarpMax(lane < nw ? red[lane] : -FLT_MAX);
}

__device__ int BlockMinInt(int v) {
  __shared__ int red[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  int t = lane < nw ? red[lane] : 0x7fffffff;
  for (int o = 16; o > 0; o >>= 1) t = min(t, __shfl_xor_sync(0xffffffffu, t, o));
  return t;
}

// Lowest index whose key equals `key` (and is at least `floor`).
__device__ int FirstWithKey(const float* row, int vocab, unsigned key) {
  int best = 0x7fffffff;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x)
    if (Key(row[i]) == key) best = min(best, i);
  return BlockMinInt(best);
}

__global__ void __launch_bounds__(kThreads) SampleKernel(const float* logits, int ld, int vocab, const float* temperature,
                                                         const float* top_p, const int* top_k, const float* u, int* out) {
  const int r = blockIdx.x;
  const float* row = logits + static_cast<size_t>(r) * ld;
  float mx = -FLT_MAX, bad = 0.0f;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    mx = fmaxf(mx, row[i]);
    bad += isfinite(row[i]) ? 0.0f : 1.0f;
  }
  mx = BlockMax(mx);
  if (BlockSum(bad) > 0.0f) {  // a model producing NaN/Inf: say so instead of sampling garbage
    if (threadIdx.x == 0) out[r] = -1;
    return;
  }
  const float T = temperature[r];
  if (!(T > 0.0f)) {  // greedy
    const int idx = FirstWithKey(row, vocab, Key(mx));
    if (threadIdx.x == 0) out[r] = idx;
    return;
  }
  const float invT = 1.0f / T;
  // Mass (or count) of the tokens whose key is >= t.
  auto mass = [&](unsigned t) {
    float acc = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
      const float l = row[i];
      if (Key(l) >= t) acc += __expf((l - mx) * invT);
    }
    return BlockSum(acc);
  };
  auto count = [&](unsigned t) {
    float acc = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) acc += Key(row[i]) >= t ? 1.0f : 0.0f;
    return BlockSum(acc);
  };
  // Largest t (bit by bit) for which pred(max(t, floor)) holds; pred is monotone (true for small t).
  auto search = [&](unsigned floor, auto pred) {
    unsigned t = 0;
    for (int bit = 31; bit >= 0; --bit) {
      const unsigned cand = t | (1u << bit);
      if (pred(cand > floor ? cand : floor)) t = cand;
    }
    return t > floor ? t : floor;
  };
  unsigned floor_key = 0;
  const int k = top_k[r];
  if (k > 0 && k < vocab) floor_key = search(0u, [&](unsigned t) { return count(t) >= static_cast<float>(k); });
  float kept = mass(floor_key);
  if (top_p[r] < 1.0f) {
    const float target = top_p[r] * kept;
    floor_key = search(floor_key, [&](unsigned t) { return mass(t) >= target; });
    kept = mass(floor_key);
  }
  const float draw = u[r] * kept;
  const unsigned pick = search(floor_key, [&](unsigned t) { return mass(t) > draw; });
  const int idx = FirstWithKey(row, vocab, pick);
  if (threadIdx.x == 0) out[r] = idx;
}

}  // namespace

void SampleTokens(cudaStream_t s, const float* logits, int ld, int rows, int vocab, const float* temperature,
                  const float* top_p, const int* top_k, const float* u, int* out) {
  if (rows == 0) return;
  SampleKernel<<<rows, kThreads, 0, s>>>(logits, ld, vocab, temperature, top_p, top_k, u, out);
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
