// Causal GQA attention over slot-indexed bf16 KV caches [slots, cap, n_kv, hd] (flash-decoding): each block
// takes one row, one KV head (all its query heads, so keys and values are read once per group) and one
// split of kSplit keys, runs an online softmax over tiles of kTile keys, and writes an unnormalised partial;
// a combine pass merges the splits. Prefill runs through the same path, one row per token.
#include <cstdio>
#include <cstdlib>

#include "ops/cuda/common.cuh"

namespace subq::cuda {
namespace {

constexpr int kThreads = 256, kTile = 256, kSplit = 512, kUnroll = 4;

__global__ void KvAppendKernel(const float* k, const float* v, int ldkv, int width, bf16* kc, bf16* vc, int cap,
                               const int* slot, const int* pos) {
  const int r = blockIdx.y, e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= width) return;
  const size_t dst = (static_cast<size_t>(slot[r]) * cap + pos[r]) * width + e;
  kc[dst] = __float2bfloat16(k[static_cast<size_t>(r) * ldkv + e]);
  vc[dst] = __float2bfloat16(v[static_cast<size_t>(r) * ldkv + e]);
}

// Loads 16 bytes (8 bf16) as floats.
__device__ __forceinline__ void Unpack8(const uint4& raw, float* f) {
  const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h2[i]);
    f[2 * i] = v.x, f[2 * i + 1] = v.y;
  }
}

// Partials: acc [rows, n_heads, nsplit, hd], then m and l [rows, n_heads, nsplit]. G query heads share the
// block's KV head. Lanes split a key row into 16-byte chunks (hd/8 lanes per key, kpp = 256/(hd/8) keys per
// pass), so K and V rows are read once per block, coalesced; kUnroll passes' loads are issued together.
template <int G>
__global__ void __launch_bounds__(kThreads) AttendSplitKernel(const float* q, int ldq, int n_heads, int n_kv, int hd,
                                                              const bf16* kc, const bf16* vc, int cap,
                                                              const int* slot, const int* pos, int nsplit,
                                                              float* pacc, float* pm, float* pl) {
  const int r = blockIdx.x, kvh = blockIdx.y, sp = blockIdx.z;
  const int len = pos[r] + 1, k0 = sp * kSplit, k1 = min(len, k0 + kSplit);
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31;
  const int lpk = hd / 8, kpp = kThreads / lpk, lk = t % lpk, kg = t / lpk;
  __shared__ float qs[G * 128];
  __shared__ float sc[G][kTile];
  __shared__ float red[kThreads / 32][G * 128];  // per-warp sums of the accumulators
  __shared__ float m[G], l[G], alpha[G];
  const size_t prow = (static_cast<size_t>(r) * n_heads + kvh * G) * nsplit + sp;  // + qh * nsplit
  if (k0 >= k1) {
    if (t < G) pm[prow + t * nsplit] = -FLT_MAX, pl[prow + t * nsplit] = 0.0f;
    return;
  }
  const float scale = rsqrtf(static_cast<float>(hd));
  for (int e = t; e < G * hd; e += kThreads) qs[e] = q[static_cast<size_t>(r) * ldq + kvh * G * hd + e] * scale;
  if (t < G) m[t] = -FLT_MAX, l[t] = 0.0f;
  float acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;
  const size_t kv_stride = static_cast<size_t>(n_kv) * hd;
  const bf16* kbase = kc + static_cast<size_t>(slot[r]) * cap * kv_stride + kvh * hd + lk * 8;
  const bf16* vbase = vc + static_cast<size_t>(slot[r]) * cap * kv_stride + kvh * hd + lk * 8;
  __syncthreads();
  for (int j0 = k0; j0 < k1; j0 += kTile) {
    const int n = min(kTile, k1 - j0), passes = (n + kpp - 1) / kpp;
    for (int b0 = 0; b0 < passes; b0 += kUnroll) {  // block-uniform trip count: all lanes shuffle
      uint4 raw[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int jj = (b0 + u) * kpp + kg;
        raw[u] = jj < n ? *reinterpret_cast<const uint4*>(kbase + static_cast<size_t>(j0 + jj) * kv_stride)
                        : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int jj = (b0 + u) * kpp + kg;
        float kf[8];
        Unpack8(raw[u], kf);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          float part = 0.0f;
#pragma unroll
          for (int i = 0; i < 8; ++i) part += qs[g * hd + lk * 8 + i] * kf[i];
          for (int o = lpk / 2; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
          if (lk == 0 && jj < n) sc[g][jj] = part;
        }
      }
    }
    __syncthreads();
    for (int g = warp; g < G; g += kThreads / 32) {
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
    for (int g = 0; g < G; ++g) {
      const float a = alpha[g];
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[g][i] *= a;
    }
    for (int b0 = 0; b0 < passes; b0 += kUnroll) {
      uint4 raw[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int jj = (b0 + u) * kpp + kg;
        raw[u] = jj < n ? *reinterpret_cast<const uint4*>(vbase + static_cast<size_t>(j0 + jj) * kv_stride)
                        : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int jj = (b0 + u) * kpp + kg;
        if (jj >= n) continue;
        float vf[8];
        Unpack8(raw[u], vf);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          const float pj = sc[g][jj];
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[g][i] += pj * vf[i];
        }
      }
    }
    __syncthreads();
  }
  // Sum the key groups: first across the lanes of a warp (same lk, lanes lpk apart), then across warps.
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      float v = acc[g][i];
      for (int o = lpk; o < 32; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane < lpk) red[warp][g * hd + lk * 8 + i] = v;
    }
  __syncthreads();
  for (int e = t; e < G * hd; e += kThreads) {
    float v = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) v += red[w][e];
    pacc[(prow + (e / hd) * nsplit) * hd + e % hd] = v;
  }
  if (t < G) pm[prow + t * nsplit] = m[t], pl[prow + t * nsplit] = l[t];
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
  if (hd > 128 || hd % 8 != 0 || ((hd / 8) & (hd / 8 - 1)) != 0 || (gq & (gq - 1)) != 0 || gq > 8) {
    std::fprintf(stderr, "Attention: %d query heads per KV head of dim %d unsupported\n", gq, hd);
    std::abort();
  }
  const int nsplit = CeilDiv(max_len, kSplit);
  float* pacc = scratch;
  float* pm = pacc + static_cast<size_t>(rows) * n_heads * nsplit * hd;
  float* pl = pm + static_cast<size_t>(rows) * n_heads * nsplit;
  const dim3 grid(rows, n_kv, nsplit);
#define SUBQ_ATTEND(G)                                                                                      \
  AttendSplitKernel<G><<<grid, kThreads, 0, s>>>(q, ldq, n_heads, n_kv, hd, k_cache, v_cache, cap, slot, pos, \
                                                 nsplit, pacc, pm, pl)
  switch (gq) {
    case 1: SUBQ_ATTEND(1); break;
    case 2: SUBQ_ATTEND(2); break;
    case 4: SUBQ_ATTEND(4); break;
    default: SUBQ_ATTEND(8); break;
  }
#undef SUBQ_ATTEND
  SUBQ_CUDA_LAUNCH_CHECK();
  CombineKernel<<<dim3(rows, n_heads), 128, 0, s>>>(n_heads, hd, nsplit, pacc, pm, pl, out, ldo);
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
