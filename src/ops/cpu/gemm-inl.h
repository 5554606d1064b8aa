// Per-target f32 GEMM core: C[M, N] = alpha A B + beta C with A and B read through packers, so one
// driver serves strided f32 views (Gemm) and weights of any WeightType (Linear prefill: B = W^T,
// converted to f32 once per packed tile). Layout of the work (BLIS-style, broadcast form):
//   for each block of kNC columns, for each kKC slice of K:
//     pack B[kc, nc] into panels of kNR columns ([kc][kNR]),
//     pack A[M, kc] into panels of kMR rows ([kc][kMR]),
//     for each B panel (hot in L1), for each A panel: a kMR x kNR register tile of accumulators,
//     each step broadcasting kMR values of A against kNR/V vectors of B.
// Edge tiles are zero-padded in the panels and stored through a small buffer.
#if defined(SUBQ_OPS_CPU_GEMM_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SUBQ_OPS_CPU_GEMM_INL_H_
#undef SUBQ_OPS_CPU_GEMM_INL_H_
#else
#define SUBQ_OPS_CPU_GEMM_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace subq::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace gemm {
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
// Register tile: AVX-512 has 32 vector registers (24 accumulators + 3 B + 1 broadcast), AVX2 and
// SSE4 have 16 (12 + 2 + 1).
#if HWY_TARGET <= HWY_AVX3
inline constexpr int kMR = 8, kNRV = 3;
#else
inline constexpr int kMR = 6, kNRV = 2;
#endif
inline constexpr int kKC = 128;   // K slice: a B micro-panel (kKC x NR floats, 24 KiB) stays in L1
inline constexpr int kNC = 1024;  // columns per B block: kKC x kNC floats (512 KiB) stay in L2
inline constexpr int kMC = 384;   // rows per A block: kMC x kKC floats (192 KiB) stay in L2 beside it

HWY_INLINE int NR() { return kNRV * static_cast<int>(hn::Lanes(DF())); }

// A per-thread growable 64-byte-aligned buffer (one per slot); grows only on first use of a size.
// Slots 0-1: GEMM panels; 2-4: Linear's decode scratch.
inline float* Buffer(int slot, size_t n) {
  thread_local hwy::AlignedFreeUniquePtr<float[]> buf[5];
  thread_local size_t cap[5] = {};
  if (cap[slot] < n) {
    buf[slot] = hwy::AllocateAligned<float>(n);
    cap[slot] = n;
  }
  return buf[slot].get();
}

// acc = A panel [kc][kMR] x B panel [kc][NR]; C tile (mr x nr valid) = alpha acc + beta C.
HWY_INLINE void Micro(int kc, const float* HWY_RESTRICT pa, const float* HWY_RESTRICT pb, float* c, size_t ldc,
                      float alpha, float beta, int mr, int nr) {
  const DF df;
  const size_t nrl = kNRV * hn::Lanes(df);
  VF acc[kMR][kNRV];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 3
    for (int v = 0; v < kNRV; ++v) acc[i][v] = hn::Zero(df);
  for (int k = 0; k < kc; ++k) {
    VF b[kNRV];
#pragma GCC unroll 3
    for (int v = 0; v < kNRV; ++v) b[v] = hn::Load(df, pb + v * hn::Lanes(df));
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      const VF a = hn::Set(df, pa[i]);
#pragma GCC unroll 3
      for (int v = 0; v < kNRV; ++v) acc[i][v] = hn::MulAdd(a, b[v], acc[i][v]);
    }
    pa += kMR;
    pb += nrl;
  }
  const VF va = hn::Set(df, alpha), vb = hn::Set(df, beta);
  if (mr == kMR && static_cast<size_t>(nr) == nrl) {
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 3
      for (int v = 0; v < kNRV; ++v) {
        float* p = c + i * ldc + v * hn::Lanes(df);
        const VF r = hn::Mul(acc[i][v], va);
        hn::StoreU(beta == 0.0f ? r : hn::MulAdd(hn::LoadU(df, p), vb, r), df, p);
      }
    return;
  }
  HWY_ALIGN float tile[kMR * kNRV * (HWY_MAX_BYTES / sizeof(float))];  // [kMR, nrl]
  for (int i = 0; i < kMR; ++i)
    for (int v = 0; v < kNRV; ++v) hn::Store(hn::Mul(acc[i][v], va), df, tile + i * nrl + v * hn::Lanes(df));
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float& o = c[i * ldc + j];
      o = beta == 0.0f ? tile[i * nrl + j] : tile[i * nrl + j] + beta * o;
    }
}

// dst[k * ldd + j] = src[j * lds + k] for j < n, k < kc: the transposing copy of packing (rows of a
// row-major operand become panel columns). Gathers of one k across Lanes rows, so every store is a full
// vector (a scalar copy with strided stores took a quarter of a 512-row prefill GEMM).
// kMaxLanes (a power of two) caps the gather width for narrow panels.
template <int kMaxLanes = 1 << 16>
HWY_INLINE void PackTransposed(const float* HWY_RESTRICT src, size_t lds, int n, int kc, float* HWY_RESTRICT dst,
                               size_t ldd) {
  const hn::CappedTag<float, kMaxLanes> df;
  const hn::RebindToSigned<decltype(df)> di;
  const int V = static_cast<int>(hn::Lanes(df));
  int j = 0;
  if (V > 1 && lds * V < (size_t{1} << 31)) {
    const auto idx = hn::Mul(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(lds)));  // row offsets
    for (; j + V <= n; j += V) {
      const float* base = src + static_cast<size_t>(j) * lds;
      for (int k = 0; k < kc; ++k) hn::StoreU(hn::GatherIndex(df, base + k, idx), df, dst + k * ldd + j);
    }
  }
  for (; j < n; ++j) {
    const float* row = src + static_cast<size_t>(j) * lds;
    for (int k = 0; k < kc; ++k) dst[k * ldd + j] = row[k];
  }
}

// Rows [0, M) x columns [n0, n1) of C. pack_a(i0, mr, k0, kc, dst) writes dst[k * kMR + i] = A(i0 + i,
// k0 + k) for i < mr (rows mr..kMR-1 left for the driver to zero); pack_b(j0, nr, k0, kc, dst) writes
// dst[k * NR + j] = B(k0 + k, j0 + j) for j < nr likewise.
template <class PackA, class PackB>
void GemmRange(int M, int n0, int n1, int K, float alpha, const PackA& pack_a, const PackB& pack_b, float beta,
               float* C, int ldc) {
  const int nr_full = NR();
  const int m_pad = (std::min(M, kMC) + kMR - 1) / kMR * kMR;
  float* pa = Buffer(0, static_cast<size_t>(m_pad) * kKC);  // [m_pad / kMR][kc][kMR] of one row block
  float* pb = Buffer(1, static_cast<size_t>(kNC + nr_full) * kKC);  // [nc / NR][kc][NR]
  for (int jc = n0; jc < n1; jc += kNC) {
    const int nc = std::min(kNC, n1 - jc);
    for (int pc = 0; pc < K; pc += kKC) {
      const int kc = std::min(kKC, K - pc);
      const float beta_k = pc == 0 ? beta : 1.0f;  // later K slices accumulate onto the first
      for (int jr = 0; jr < nc; jr += nr_full) {
        const int nr = std::min(nr_full, nc - jr);
        float* dst = pb + static_cast<size_t>(jr) * kc;
        if (nr < nr_full) std::memset(dst, 0, sizeof(float) * kc * nr_full);
        pack_b(jc + jr, nr, pc, kc, dst);
      }
      for (int ic = 0; ic < M; ic += kMC) {  // blocks of kMC rows: their A panels stay in L2
        const int mc = std::min(kMC, M - ic);
        for (int ir = 0; ir < mc; ir += kMR) {
          const int mr = std::min(kMR, mc - ir);
          float* dst = pa + static_cast<size_t>(ir) * kc;
          if (mr < kMR) std::memset(dst, 0, sizeof(float) * kc * kMR);
          pack_a(ic + ir, mr, pc, kc, dst);
        }
        // B micro-panel outer: it stays in L1 while the A panels stream past it from L2 (only their
        // broadcast scalars are loaded, a quarter of the vector traffic).
        for (int jr = 0; jr < nc; jr += nr_full) {
          const int nr = std::min(nr_full, nc - jr);
          for (int ir = 0; ir < mc; ir += kMR) {
            Micro(kc, pa + static_cast<size_t>(ir) * kc, pb + static_cast<size_t>(jr) * kc,
                  C + static_cast<size_t>(ic + ir) * ldc + jc + jr, ldc, alpha, beta_k, std::min(kMR, mc - ir), nr);
          }
        }
      }
    }
  }
}

// Packs rows i0..i0+mr of a strided f32 A (trans: A(i, k) = a[k * lda + i]).
struct PackStridedA {
  const float* a;
  int lda;
  bool trans;
  void operator()(int i0, int mr, int k0, int kc, float* HWY_RESTRICT dst) const {
    if (trans) {
      for (int k = 0; k < kc; ++k) std::memcpy(dst + k * kMR, a + static_cast<size_t>(k0 + k) * lda + i0, mr * 4);
      return;
    }
    PackTransposed<(kMR >= 8 ? 8 : 4)>(a + static_cast<size_t>(i0) * lda + k0, lda, mr, kc, dst, kMR);
  }
};

// Packs columns j0..j0+nr of a strided f32 B (trans: B(k, j) = b[j * ldb + k]).
struct PackStridedB {
  const float* b;
  int ldb;
  bool trans;
  void operator()(int j0, int nr, int k0, int kc, float* HWY_RESTRICT dst) const {
    const int nrf = NR();
    if (!trans) {
      for (int k = 0; k < kc; ++k) std::memcpy(dst + k * nrf, b + static_cast<size_t>(k0 + k) * ldb + j0, nr * 4);
      return;
    }
    PackTransposed(b + static_cast<size_t>(j0) * ldb + k0, ldb, nr, kc, dst, nrf);
  }
};

}  // namespace gemm
}  // namespace subq::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();
#endif
