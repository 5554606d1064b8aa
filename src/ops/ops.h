// Math that knows nothing about models. Scalar references live in ops/reference.h; these are the
// fast paths used by the engine (OpenBLAS for f32 GEMM).
#pragma once
#include <cstdint>

namespace subq::ops {

// y[M, N] = x[M, K] * W[N, K]^T (+ y if accumulate). W is a torch-style Linear weight [out, in].
void Linear(const float* x, const float* w, float* y, int M, int K, int N, bool accumulate = false);
// C[M, N] = A[M, K] * B[K, N] (row-major), alpha/beta as BLAS.
void Gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
// out[i] = x[i] / rms(x) * w[i] over rows of length n.
void RmsNorm(const float* x, const float* w, float* out, int rows, int n, float eps);
void SoftmaxInPlace(float* x, int n);
inline float Silu(float x);
inline float Softplus(float x);
void SiluInPlace(float* x, int64_t n);

}  // namespace subq::ops

#include <cmath>
namespace subq::ops {
inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }
inline float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }
}  // namespace subq::ops
