// Plain scalar references of the ops: the spec and the test oracle of every fast kernel (ops/cpu/).
// Readable loops, double accumulation, no SIMD, no threads. Same argument conventions as ops.h/ssd.h.
#pragma once
#include <cstdint>

#include "ops/ssd.h"
#include "ops/weight.h"

namespace subq::ops::ref {

// y[M, N] = x[M, K] W[N, K]^T (+ y when accumulate).
void Linear(const float* x, int M, const Weight& w, float* y, bool accumulate = false);
// C[M, N] = alpha op(A) op(B) + beta C (beta == 0: C is not read).
void Gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc);
void RmsNorm(const float* x, const float* w, float* out, int rows, int n, float eps);
void GatedRmsNorm(float* y, int ldy, const float* z, int ldz, const float* w, int rows, int n, int group, float eps);
void SoftmaxInPlace(float* x, int n);
void SiluMul(float* a, const float* b, int64_t n);
void SiluInPlace(float* x, int64_t n);
void Rope(float* x, int n_heads, int hd, int pos, const float* inv_freq, bool interleaved);
void CausalConv(const float* in, int ldin, int L, int C, const float* w, const float* bias, int K, float* state,
                float* out, int ldout, bool silu);
// Materialises every score row (the oracle may use O(T) memory per query).
void AttendCausal(const float* q, int ldq, int L, int n_heads, int n_kv_heads, int hd, const float* k,
                  const float* v, int ldkv, int past, float* out, int ldo);
void SsdStep(const SsdDims& d, const float* x, const float* b, const float* c, const float* loga, float* state,
             float* y);
// The chunked scan's spec is the recurrence itself: L steps of SsdStep (rows of the strided views).
void SsdScan(const SsdDims& d, int L, const float* x, int ldx, const float* b, const float* c, int ldbc,
             const float* loga, float* state, float* y, int ldy);

}  // namespace subq::ops::ref
