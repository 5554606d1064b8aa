// ops: math that knows nothing about models. One signature per op; ops/reference.h holds a plain
// scalar version of each, the oracle of its test. Fast paths dispatch on CPU features at run time.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops/weight.h"
#include "util/threads.h"

namespace subq::ops {

// y[M, N] = x[M, K] W^T (+ y when accumulate), W = w [N, K] of any WeightType; x and y contiguous rows.
// Parallel over output columns (and rows) with th.n threads.
void Linear(const Threads& th, const float* x, int M, const Weight& w, float* y, bool accumulate = false);

// C[M, N] = alpha op(A) op(B) + beta C for f32 row-major strided views (mixer internals: scans, attention).
void Gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc);
// The same with th.n threads (split over output columns, or rows when there are few columns).
// Added next to the frozen single-threaded form for callers that own a thread budget.
void Gemm(const Threads& th, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

// out[r, i] = x[r, i] / rms(x[r, :]) * w[i]; rows of length n. out may equal x.
void RmsNorm(const float* x, const float* w, float* out, int rows, int n, float eps);
// Gated norm (Mamba-2): y = rmsnorm_g(y * silu(z)) * w, in place; rows of n channels normalised in groups
// of `group` channels; y rows of stride ldy, z rows of stride ldz.
void GatedRmsNorm(float* y, int ldy, const float* z, int ldz, const float* w, int rows, int n, int group, float eps);

void SoftmaxInPlace(float* x, int n);
// a[i] = silu(a[i]) * b[i] (SwiGLU).
void SiluMul(float* a, const float* b, int64_t n);
void SiluInPlace(float* x, int64_t n);
inline float Silu(float x);
inline float Softplus(float x);

// Rotates n_heads heads of head_dim (hd) of one token at position pos in place. inv_freq [hd/2].
// interleaved: pairs (2i, 2i+1) (llama2.c/GGUF); else rotate-half pairs (i, i + hd/2) (HF).
void Rope(float* x, int n_heads, int hd, int pos, const float* inv_freq, bool interleaved);

// Depthwise causal conv over C channels of L tokens (prefill, or L == 1 for a step). in row t at
// in + t*ldin; w [C, K]; bias [C] or nullptr; state [K-1, C] holds the K-1 previous inputs (oldest
// first) and is advanced; out row t at out + t*ldout; SiLU applied when `silu`.
void CausalConv(const float* in, int ldin, int L, int C, const float* w, const float* bias, int K, float* state,
                float* out, int ldout, bool silu);

// Causal softmax attention with GQA for L new queries at positions past..past+L-1 over keys/values
// 0..past+L-1 (the new ones already appended). q row t at q + t*ldq, head h at +h*hd (already rotated);
// key/value token j at k + j*ldkv (+kv_head*hd); out row t at out + t*ldo. scale = 1/sqrt(hd).
// Online softmax over key tiles: no L x T buffer; scratch holds AttentionScratchFloats(hd) floats.
void AttendCausal(const float* q, int ldq, int L, int n_heads, int n_kv_heads, int hd, const float* k,
                  const float* v, int ldkv, int past, float* out, int ldo, float* scratch);
size_t AttentionScratchFloats(int hd);
// The same over th.n threads (work split over KV heads and blocks of query tokens); scratch holds
// th.n * AttentionScratchFloats(hd) floats.
void AttendCausal(const Threads& th, const float* q, int ldq, int L, int n_heads, int n_kv_heads, int hd,
                  const float* k, const float* v, int ldkv, int past, float* out, int ldo, float* scratch);
inline constexpr int kAttentionKeyTile = 256;

}  // namespace subq::ops

#include <cmath>
namespace subq::ops {
inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }
inline float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }
}  // namespace subq::ops
