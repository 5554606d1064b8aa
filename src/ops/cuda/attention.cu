// Causal GQA attention over slot-indexed bf16 KV caches [slots, cap, n_kv, hd] (flash-decoding): each block
// takes one row, one KV head (all its query heads, so keys and values are read once per group) and one
// split of kSplit keys, runs an online softmax over tiles of kTile keys, and writes an unnormalised partial;
// a combine pass merges the splits. Prefill runs through the same path, one row per token.
#include <cstdio>
#include <cstdlib>

#include "ops/cuda/common.cuh"

namespace subq::cuda {
namespace {

constexpr int kThreads = 256, kTile = 256, kSplit = 512, kMaxGroup = 8, kMaxWidth = 1024;

__global__ void KvAppendKernel(const float* k, const float* v, int ldkv, int width, bf16* kc, bf16* vc, int cap,
                               const int* slot, const int* pos) {
  const int r = blockIdx.y, e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= width) return;
  const size_t dst = (static_cast<size_t>(slot[r]) * cap + pos[r]) * width + e;
  kc[dst] = __float2bfloat16(k[static_cast<size_t>(r) * ldkv + e]);
  vc[dst] = __float2bfloat16(v[static_cast<size_t>(r) * ldkv + e]);
}

// Partials: acc [rows, n_heads, nsplit, hd], then m and l [rows, n_heads, nsplit]. Lanes split a key row
// into 16-byte chunks (hd/8 lanes per key, 256/(hd/8) keys per pass), so K and V rows are read once per
// block, coalesced, for all query heads of the group.
__global__ void __launch_bounds__(kThreads) AttendSplitKernel(const float* q, int ldq, int n_heads, int n_kv, int hd,
                                                              const bf16* kc, const bf16* vc, int cap,
                                                              const int* slot, const int* pos, int nsplit,
                                                              float* pacc, float* pm, float* pl) {
  const int r = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z, gq = n_heads / n_kv;
  const int len = pos[r] + 1, k0 = sp * kSplit, k1 = min(len, k0 + kSplit);
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31;
  const int lpk = hd / 8, kpp = kThreads / lpk, lk = t % lpk, kg = t / lpk;
  __shared__ float qs[kMaxGroup * 128];
  __shared__ float sc[kMaxGroup][kTile];
  __shared__ float red[kThreads / 32][kMaxWidth];  // per-warp sums of the accumulators
  __shared__ float m[kMaxGroup], l[kMaxGroup], alpha[kMaxGroup];
  const size_t prow = (static_cast<size_t>(r) * n_heads + kvh * gq) * nsplit + sp;  // + qh * nsplit
  if (k0 >= k1) {
    if (t < gq) pm[prow + t * nsplit] = -FLT_MAX, pl[prow + t * nsplit] = 0.0f;
    return;
  }
  const float scale = rsqrtf(static_cast<float>(hd));
  for (int e = t; e < gq * hd; e += kThreads) qs[e] = q[static_cast<size_t>(r) * ldq + kvh * gq * hd + e] * scale;
  if (t < gq) m[t] = -FLT_MAX, l[t] = 0.0f;
  float acc[kMaxGroup][8];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;
  const size_t kv_stride = static_cast<size_t>(n_kv) * hd;
  const bf16* kbase = kc + static_cast<size_t>(slot[r]) * cap * kv_stride + kvh * hd + lk * 8;
  const bf16* vbase = vc + static_cast<size_t>(slot[r]) * cap * kv_stride + kvh * hd + lk * 8;
  __syncthreads();
  for (int j0 = k0; j0 < k1; j0 += kTile) {
    const int n = min(kTile, k1 - j0);
    for (int b = 0; b < n; b += kpp) {  // uniform trip count: every lane takes part in the shuffles
      const int jj = b + kg;
      float kf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      if (jj < n) {
        const uint4 raw = *reinterpret_cast<const uint4*>(kbase + static_cast<size_t>(j0 + jj) * kv_stride);
        const __nv_bfloat162* k2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f = __bfloat1622float2(k2[i]);
          kf[2 * i] = f.x, kf[2 * i + 1] = f.y;
        }
      }
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g >= gq) break;
        float part = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) part += qs[g * hd + lk * 8 + i] * kf[i];
        for (int o = lpk / 2; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
        if (lk == 0 && jj < n) sc[g][jj] = part;
      }
    }
    __syncthreads();
    for (int g = warp; g < gq; g += kThreads / 32) {
      float mx = -FLT_MAX;
      for (int j = lane; j < n; j += 32) mx = fmaxf(mx, sc[g][j]);
      mx = WarpMax(mx);
      const float mn = fmaxf(m[g], mx);
      float sum = 0.0f;
      for (int j = lane; j < n; j += 32) {
        const float pj = __expf(sc[g][j] - mn);
        sc[g][j] = pj;
        sum += pj;
      }
      sum = WarpSum(sum);
      if (lane == 0) {
        const float a = __expf(m[g] - mn);
        alpha[g] = a;
        l[g] = l[g] * a + sum;
        m[g] = mn;
      }
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= gq) break;
      const float a = alpha[g];
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[g][i] *= a;
    }
    for (int jj = kg; jj < n; jj += kpp) {
      const uint4 raw = *reinterpret_cast<const uint4*>(vbase + static_cast<size_t>(j0 + jj) * kv_stride);
      const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
      float vf[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(v2[i]);
        vf[2 * i] = f.x, vf[2 * i + 1] = f.y;
      }
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g >= gq) break;
        const float pj = sc[g][jj];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] += pj * vf[i];
      }
    }
    __syncthreads();
  }
  // Sum the key groups: first across the lanes of a warp (same lk, lanes lpk apart), then across warps.
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g >= gq) break;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      float v = acc[g][i];
      for (int o = lpk; o < 32; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane < lpk) red[warp][g * hd + lk * 8 + i] = v;
    }
  }
  const int width = gq * hd;
  __syncthreads();
  for (int e = t; e < width; e += kThreads) {
    float v = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) v += red[w][e];
    pacc[(prow + (e / hd) * nsplit) * hd + e % hd] = v;
  }
  if (t < gq) pm[prow + t * nsplit] = m[t], pl[prow + t * nsplit] = l[t];
}

__global__ void CombineKernel(int n_heads, int hd, int nsplit, const float* pacc, const float* pm, const float* pl,
                              bf16* out, int ldo) {
  const int r = blockIdx.x, h = blockIdx.y;
  const size_t base = (static_cast<size_t>(r) * n_heads + h) * nsplit;
  float M = -FLT_MAX;
  for (int s = 0; s < nsplit; ++s) M = fmaxf(M, pm[base + s]);
  float L = 0.0f;
  for (int s = 0; s < nsplit; ++s) L += pl[base + s] * __expf(pm[base + s] - M);
  const float inv = 1.0f / L;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < nsplit; ++s)
      if (pl[base + s] > 0.0f) o += pacc[(base + s) * hd + d] * __expf(pm[base + s] - M);
    out[static_cast<size_t>(r) * ldo + h * hd + d] = __float2bfloat16(o * inv);
  }
}

}  // namespace

void KvAppend(cudaStream_t s, const float* k, const float* v, int ldkv, int rows, int n_kv, int hd, bf16* k_cache,
              bf16* v_cache, int cap, const int* slot, const int* pos) {
  if (rows == 0) return;
  const int width = n_kv * hd;
  KvAppendKernel<<<dim3(CeilDiv(width, 128), rows), 128, 0, s>>>(k, v, ldkv, width, k_cache, v_cache, cap, slot, pos);
  SUBQ_CUDA_LAUNCH_CHECK();
}

size_t AttentionScratchFloats(int rows, int n_heads, int hd, int max_len) {
  const size_t nsplit = CeilDiv(max_len, kSplit);
  return static_cast<size_t>(rows) * n_heads * nsplit * (hd + 2);
}

void Attention(cudaStream_t s, const float* q, int ldq, int rows, int n_heads, int n_kv, int hd,
               const bf16* k_cache, const bf16* v_cache, int cap, const int* slot, const int* pos, int max_len,
               bf16* out, int ldo, float* scratch) {
  if (rows == 0) return;
  const int gq = n_heads / n_kv;
  if (gq > kMaxGroup || hd > 128 || hd % 8 != 0 || ((hd / 8) & (hd / 8 - 1)) != 0 || gq * hd > kMaxWidth) {
    std::fprintf(stderr, "Attention: %d query heads per KV head of dim %d unsupported\n", gq, hd);
    std::abort();
  }
  const int nsplit = CeilDiv(max_len, kSplit);
  float* pacc = scratch;
  float* pm = pacc + static_cast<size_t>(rows) * n_heads * nsplit * hd;
  float* pl = pm + static_cast<size_t>(rows) * n_heads * nsplit;
  AttendSplitKernel<<<dim3(rows, n_kv, nsplit), kThreads, 0, s>>>(q, ldq, n_heads, n_kv, hd, k_cache, v_cache, cap,
                                                                   slot, pos, nsplit, pacc, pm, pl);
  SUBQ_CUDA_LAUNCH_CHECK();
  CombineKernel<<<dim3(rows, n_heads), 128, 0, s>>>(n_heads, hd, nsplit, pacc, pm, pl, out, ldo);
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
