// Gated DeltaNet on CUDA (cuda_ops.h; SPEC section 5, the CPU form in mixers/gated_deltanet.cc): the
// gated delta rule token by token over each sequence, the state held in registers (read and written once
// per call), q/k L2 norms and the gates computed in the same kernel. f32 math and state.
#include <cstdio>
#include <cstdlib>

#include "ops/cuda/common.cuh"

namespace subq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kL2Eps = 1e-6f;

// Sum over the tpr consecutive lanes that share one state row (tpr a power of two <= 32).
__device__ __forceinline__ float GroupSum(float v, int tpr) {
  for (int off = tpr / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ float Dot4(const float4& a, const float4& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

// Block (sequence, v-head, tile of value columns b); the state is stored transposed, S^T [dv, dk], so each
// thread owns 4 consecutive k-dims (float4) of RPT value columns, dk/4 threads per column. Per token:
// S *= exp(g); u = beta (v - S^T k); S += k u^T; o = S^T q.
template <int RPT>
__global__ void __launch_bounds__(kThreads) GdnKernel(GdnParams p, int seq_len, const float* qkv, int ldqkv,
                                                      const float* ab, int ldab, float* states, const int* slot,
                                                      float* o, int ldo) {
  const int j = blockIdx.x, h = blockIdx.y, tpr = p.dk / 4, rpp = kThreads / tpr;
  const int b0 = blockIdx.z * rpp * RPT + threadIdx.x / tpr, a0 = (threadIdx.x % tpr) * 4, r0 = j * seq_len;
  const int hk = h / (p.Hv / p.Hk), Ck = p.Hk * p.dk;
  float4* Sg = reinterpret_cast<float4*>(states + (static_cast<size_t>(slot[r0]) * p.Hv + h) * p.dv * p.dk + a0);
  float4 S[RPT];
#pragma unroll
  for (int k = 0; k < RPT; ++k)
    S[k] = b0 + k * rpp < p.dv ? Sg[static_cast<size_t>(b0 + k * rpp) * p.dk / 4] : make_float4(0.f, 0.f, 0.f, 0.f);
  const float neg_a = -__expf(p.A_log[h]), dtb = p.dt_bias[h], qscale = rsqrtf(static_cast<float>(p.dk));
  for (int t = 0; t < seq_len; ++t) {
    const float* row = qkv + static_cast<size_t>(r0 + t) * ldqkv;
    const float* abr = ab + static_cast<size_t>(r0 + t) * ldab;
    float4 q = *reinterpret_cast<const float4*>(row + hk * p.dk + a0);
    float4 kv = *reinterpret_cast<const float4*>(row + Ck + hk * p.dk + a0);
    const float qn = rsqrtf(GroupSum(Dot4(q, q), tpr) + kL2Eps) * qscale, kn = rsqrtf(GroupSum(Dot4(kv, kv), tpr) + kL2Eps);
    q.x *= qn, q.y *= qn, q.z *= qn, q.w *= qn;
    kv.x *= kn, kv.y *= kn, kv.z *= kn, kv.w *= kn;
    const float decay = __expf(neg_a * SoftplusF(abr[h] + dtb));
    const float beta = 1.0f / (1.0f + __expf(-abr[p.Hv + h]));
    const float* v = row + 2 * Ck + h * p.dv;
#pragma unroll
    for (int k = 0; k < RPT; ++k) {
      const int bi = b0 + k * rpp;
      S[k].x *= decay, S[k].y *= decay, S[k].z *= decay, S[k].w *= decay;
      const float w = GroupSum(Dot4(S[k], kv), tpr);
      const float u = beta * ((bi < p.dv ? v[bi] : 0.0f) - w);
      S[k].x += kv.x * u, S[k].y += kv.y * u, S[k].z += kv.z * u, S[k].w += kv.w * u;
      const float ov = GroupSum(Dot4(S[k], q), tpr);
      if (bi < p.dv && threadIdx.x % tpr == 0) o[static_cast<size_t>(r0 + t) * ldo + h * p.dv + bi] = ov;
    }
  }
#pragma unroll
  for (int k = 0; k < RPT; ++k)
    if (b0 + k * rpp < p.dv) Sg[static_cast<size_t>(b0 + k * rpp) * p.dk / 4] = S[k];
}

}  // namespace

void GdnForward(cudaStream_t s, const GdnParams& p, int rows, int seq_len, const float* qkv, int ldqkv,
                const float* ab, int ldab, float* states, const int* slot, float* o, int ldo) {
  if (rows == 0) return;
  const int tpr = p.dk / 4;
  if (p.dk % 4 != 0 || tpr > 32 || (tpr & (tpr - 1)) != 0 || p.Hv % p.Hk != 0 || seq_len < 1 || rows % seq_len != 0 ||
      ldqkv % 4 != 0 || reinterpret_cast<uintptr_t>(qkv) % 16 != 0) {
    std::fprintf(stderr, "GdnForward: unsupported shape (dk %d, Hk %d, Hv %d, rows %d, seq_len %d, ldqkv %d)\n", p.dk,
                 p.Hk, p.Hv, rows, seq_len, ldqkv);
    std::abort();
  }
  const int nseq = rows / seq_len, rpp = kThreads / tpr;
  if (nseq >= 16) {
    GdnKernel<4><<<dim3(nseq, p.Hv, CeilDiv(p.dv, rpp * 4)), kThreads, 0, s>>>(p, seq_len, qkv, ldqkv, ab, ldab, states,
                                                                               slot, o, ldo);
  } else {
    GdnKernel<1><<<dim3(nseq, p.Hv, CeilDiv(p.dv, rpp)), kThreads, 0, s>>>(p, seq_len, qkv, ldqkv, ab, ldab, states,
                                                                          slot, o, ldo);
  }
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
