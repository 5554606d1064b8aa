// ops::Gemm: general strided f32 GEMM with transposes (mixer internals: SSD scan, attention) on the
// packed kernel of gemm-inl.h. Our own kernel rather than a BLAS: the engine must not depend on a
// BLAS library's CPU detection for its speed (OpenBLAS 0.3.21 runs SSE3 kernels on this CPU).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/cpu/gemm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "hwy/highway.h"
#include "ops/cpu/gemm-inl.h"
#include "ops/ops.h"

HWY_BEFORE_NAMESPACE();
namespace subq::ops::HWY_NAMESPACE {

void GemmImpl(int nt, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
              const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {  // C = beta C (beta == 0: C is not read)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        float& c = C[static_cast<size_t>(i) * ldc + j];
        c = beta == 0.0f ? 0.0f : beta * c;
      }
    return;
  }
  const int nr = gemm::NR(), col_chunks = (N + nr - 1) / nr;
  const int row_chunks = (M + gemm::kMR - 1) / gemm::kMR;
  // Split the columns when there are enough of them (B packed once overall), else the rows.
  const bool by_cols = col_chunks >= 2 * nt || col_chunks >= row_chunks;
  nt = std::max(1, std::min(nt, by_cols ? col_chunks : row_chunks));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), n_t = omp_get_num_threads();
    const gemm::PackStridedB pb{B, ldb, trans_b};
    if (by_cols) {
      const int n0 = std::min(N, static_cast<int>(static_cast<int64_t>(col_chunks) * t / n_t) * nr);
      const int n1 = std::min(N, static_cast<int>(static_cast<int64_t>(col_chunks) * (t + 1) / n_t) * nr);
      if (n0 < n1) gemm::GemmRange(M, n0, n1, K, alpha, gemm::PackStridedA{A, lda, trans_a}, pb, beta, C, ldc);
    } else {
      const int m0 = std::min(M, static_cast<int>(static_cast<int64_t>(row_chunks) * t / n_t) * gemm::kMR);
      const int m1 = std::min(M, static_cast<int>(static_cast<int64_t>(row_chunks) * (t + 1) / n_t) * gemm::kMR);
      const float* a0 = trans_a ? A + m0 : A + static_cast<size_t>(m0) * lda;  // rows m0.. of op(A)
      if (m0 < m1)
        gemm::GemmRange(m1 - m0, 0, N, K, alpha, gemm::PackStridedA{a0, lda, trans_a}, pb, beta,
                        C + static_cast<size_t>(m0) * ldc, ldc);
    }
  }
}

}  // namespace subq::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace subq::ops {
HWY_EXPORT(GemmImpl);

void Gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
  HWY_DYNAMIC_DISPATCH(GemmImpl)(1, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void Gemm(const Threads& th, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  // As for Linear: small products on one thread (a fork/join costs more than they do).
  const int64_t macs = static_cast<int64_t>(M) * N * K;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(th.n, macs / (1 << 16))));
  HWY_DYNAMIC_DISPATCH(GemmImpl)(nt, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
}  // namespace subq::ops
#endif
