// ops::Linear, y[M, N] = x[M, K] W[N, K]^T for every WeightType (Highway, runtime dispatch, OpenMP).
// Two regimes:
//  - few rows (decode, batched decode; M < kGemmMinRows): memory-bound. Threads split W into
//    contiguous row ranges; each tile of kNW weight rows is read from memory once and dotted along K
//    against every x row (register tile of up to 4 x rows x kNW weight rows). For few rows (4 for
//    q8/q4, 8 for f16/bf16) the weights are converted to f32 in registers as they stream; beyond that
//    a tile is converted once into an L1 buffer and reused by every block of x rows.
//  - many rows (prefill): the cache-blocked GEMM of gemm-inl.h with B = W^T packed (and converted to
//    f32) once per tile, threads splitting the output columns.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/cpu/linear.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "ops/cpu/convert-inl.h"
#include "ops/cpu/gemm-inl.h"
#include "ops/ops.h"

HWY_BEFORE_NAMESPACE();
namespace subq::ops::HWY_NAMESPACE {
namespace {

inline constexpr int kNW = 4;            // weight rows per dot tile
inline constexpr int kGemmMinRows = 48;  // from here on the packed GEMM wins (bench_ops)

// Bytes ahead of the current weights to prefetch: a whole number of tiles, at least 4 KiB. A tile's
// rows are short streams (384 B per q4 row at K = 768), too short for the hardware prefetcher to
// ramp up, so without this decode is latency- rather than bandwidth-bound (bench_ops: 35-56% of
// one core's read bandwidth for f16/q8/q4 before, see the commit).
template <WeightType T, int NW>
size_t PrefetchDistance(int K) {
  const size_t row = T == WeightType::kF32 ? 4 * K : T == WeightType::kQ8 ? K : T == WeightType::kQ4 ? K / 2 : 2 * K;
  const size_t tile = NW * row;
  return (4096 + tile - 1) / tile * tile;
}

// y[m * N + n + r] (+)= x[m, :] . W[n + r, :] for m < MX, r < NW, with W of type T read directly.
template <WeightType T, int MX, int NW>
HWY_INLINE void DotTile(const float* HWY_RESTRICT x, int K, const Weight& w, int64_t n, float* y, int64_t N,
                        bool accumulate, const float* HWY_RESTRICT sc, const float* HWY_RESTRICT xsum) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  const size_t K_ = static_cast<size_t>(K);
  VF acc[MX][NW];
#pragma GCC unroll 4
  for (int m = 0; m < MX; ++m)
#pragma GCC unroll 4
    for (int r = 0; r < NW; ++r) acc[m][r] = hn::Zero(df);
  const int nb = K / kQuantBlock;
  int k = 0;
  float corr[MX][NW] = {};  // q4: sum over blocks of scale * 8 * (sum of the block's x)
  if constexpr (T == WeightType::kQ4) {
    // (nibble - 8) . x = nibble . x - 8 sum(x): the offset is applied once per block through xsum
    // (8 x block sums of each x row) instead of on every weight vector.
    const uint8_t* base = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n) * (K_ / 2);
    const size_t ahead = PrefetchDistance<T, NW>(K);
    for (int b = 0; b < nb; ++b) {
      for (int r = 0; r < NW; ++r) hwy::Prefetch(base + r * (K_ / 2) + b * 16 + ahead);
      for (int j = 0; j < kQuantBlock / 2; j += V) {
        const int c0 = b * kQuantBlock + j;  // low nibbles: columns c0..; high nibbles: c0 + 16..
        VF xl[MX], xh[MX];
#pragma GCC unroll 4
        for (int m = 0; m < MX; ++m) {
          xl[m] = hn::LoadU(df, x + m * K_ + c0);
          xh[m] = hn::LoadU(df, x + m * K_ + c0 + 16);
        }
#pragma GCC unroll 4
        for (int r = 0; r < NW; ++r) {
          VF lo, hi;
          LoadQ4Nibbles(df, base + r * (K_ / 2) + b * 16 + j, lo, hi);
          const VF d = hn::Set(df, sc[r * nb + b]);
          // Scale the block's partial dot product, not the weights: 3 ops per x row instead of 4.
#pragma GCC unroll 4
          for (int m = 0; m < MX; ++m) acc[m][r] = hn::MulAdd(hn::MulAdd(xh[m], hi, hn::Mul(xl[m], lo)), d, acc[m][r]);
        }
      }
      for (int r = 0; r < NW; ++r)
        for (int m = 0; m < MX; ++m) corr[m][r] += sc[r * nb + b] * xsum[m * nb + b];
    }
    k = K;
  } else {
    const size_t ahead = PrefetchDistance<T, NW>(K);
    const uint8_t* bytes = static_cast<const uint8_t*>(w.data);
    constexpr size_t kElem = T == WeightType::kF32 ? 4 : T == WeightType::kQ8 ? 1 : 2;
    for (; k + V <= K; k += V) {
#pragma GCC unroll 4
      for (int r = 0; r < NW; ++r) hwy::Prefetch(bytes + (static_cast<size_t>(n + r) * K_ + k) * kElem + ahead);
      VF xv[MX];
#pragma GCC unroll 4
      for (int m = 0; m < MX; ++m) xv[m] = hn::LoadU(df, x + m * K_ + k);
#pragma GCC unroll 4
      for (int r = 0; r < NW; ++r) {
        const size_t o = static_cast<size_t>(n + r) * K_ + k;
        VF wv;
        if constexpr (T == WeightType::kF32) {
          wv = hn::LoadU(df, static_cast<const float*>(w.data) + o);
        } else if constexpr (T == WeightType::kF16) {
          wv = LoadF16(df, static_cast<const uint16_t*>(w.data) + o);
        } else if constexpr (T == WeightType::kBF16) {
          wv = LoadBF16(df, static_cast<const uint16_t*>(w.data) + o);
        } else {
          wv = hn::Mul(LoadQ8(df, static_cast<const int8_t*>(w.data) + o), hn::Set(df, sc[r * nb + k / kQuantBlock]));
        }
#pragma GCC unroll 4
        for (int m = 0; m < MX; ++m) acc[m][r] = hn::MulAdd(xv[m], wv, acc[m][r]);
      }
    }
  }
  for (int m = 0; m < MX; ++m) {
    for (int r = 0; r < NW; ++r) {
      float s = hn::GetLane(hn::SumOfLanes(df, acc[m][r])) - corr[m][r];
      if (k < K) {  // column tail (K % V): element types only, since K % 32 == 0 for quantized ones
        float row[HWY_MAX_BYTES / sizeof(float)];
        ConvertRow(w, n + r, k, K - k, row);
        for (int j = k; j < K; ++j) s += x[m * K_ + j] * row[j - k];
      }
      float& o = y[m * N + n + r];
      o = accumulate ? o + s : s;
    }
  }
}

// Rows [m0, m0 + rows) of x against weight rows n..n+NW-1, four x rows at a time.
template <WeightType T, int NW>
void DotRows(const float* x, int rows, int K, const Weight& w, int64_t n, float* y, int64_t N, bool acc,
             const float* sc, const float* xsum) {
  const int nb = K / kQuantBlock;
  int m = 0;
  for (; m + 4 <= rows; m += 4)
    DotTile<T, 4, NW>(x + m * static_cast<size_t>(K), K, w, n, y + m * N, N, acc, sc, xsum + m * nb);
  const float* xr = x + m * static_cast<size_t>(K);
  float* yr = y + m * N;
  const float* xs = xsum + m * nb;
  switch (rows - m) {
    case 3: DotTile<T, 3, NW>(xr, K, w, n, yr, N, acc, sc, xs); break;
    case 2: DotTile<T, 2, NW>(xr, K, w, n, yr, N, acc, sc, xs); break;
    case 1: DotTile<T, 1, NW>(xr, K, w, n, yr, N, acc, sc, xs); break;
    default: break;
  }
}

// One tile of nw (== NW, or the 1-row tail) weight rows for all M rows of x.
template <WeightType T, int NW>
void LinearTile(const float* x, int M, const Weight& w, int64_t n, float* y, bool acc, const float* xsum) {
  const int K = static_cast<int>(w.cols);
  const int64_t N = w.rows;
  // Converting as the weights stream costs one op per vector for f16/bf16 (more for q8/q4) per block
  // of 4 x rows; past that a converted tile in L1 is cheaper.
  constexpr int kFusedRows = T == WeightType::kF16 || T == WeightType::kBF16 ? 8 : 4;
  if (T == WeightType::kF32 || M <= kFusedRows) {
    float* sc = nullptr;
    if constexpr (T == WeightType::kQ8 || T == WeightType::kQ4) {
      sc = gemm::Buffer(2, static_cast<size_t>(NW) * (K / kQuantBlock));
      ScalesToF32(DF(), w.scales + n * (K / kQuantBlock), NW * (K / kQuantBlock), sc);  // rows n.. contiguous
    }
    DotRows<T, NW>(x, M, K, w, n, y, N, acc, sc, xsum);
    return;
  }
  // Convert the tile to f32 once; every block of x rows then reads it from L1.
  float* tile = gemm::Buffer(3, static_cast<size_t>(NW) * K);  // [NW, K]
  const size_t row_bytes = w.Bytes() / w.rows - (w.scales != nullptr ? 2 * (K / kQuantBlock) : 0);
  const uint8_t* next = static_cast<const uint8_t*>(w.data) + n * row_bytes + PrefetchDistance<T, NW>(K);
  for (size_t off = 0; off < NW * row_bytes; off += 64) hwy::Prefetch(next + off);
  for (int r = 0; r < NW; ++r) ConvertRow(w, n + r, 0, K, tile + static_cast<size_t>(r) * K);
  const Weight f32 = Weight::F32(tile, NW, K);  // row r = weight row n + r: outputs from column n
  DotRows<WeightType::kF32, NW>(x, M, K, f32, 0, y + n, N, acc, nullptr, nullptr);
}

template <WeightType T>
void LinearFewRows(int nt, const float* x, int M, const Weight& w, float* y, bool acc) {
  const int64_t N = w.rows, tiles = N / kNW;
  float* xsum = nullptr;  // [M, K / 32] 8 x block sums, for the fused q4 kernel (read by every thread)
  if (T == WeightType::kQ4 && M <= 4) {
    const int K = static_cast<int>(w.cols), nb = K / kQuantBlock;
    xsum = gemm::Buffer(4, static_cast<size_t>(M) * nb);
    for (int m = 0; m < M; ++m)
      for (int b = 0; b < nb; ++b) {
        float s = 0.0f;
        for (int j = 0; j < kQuantBlock; ++j) s += x[static_cast<size_t>(m) * K + b * kQuantBlock + j];
        xsum[m * nb + b] = 8.0f * s;
      }
  }
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t t = 0; t < tiles; ++t) LinearTile<T, kNW>(x, M, w, t * kNW, y, acc, xsum);
  for (int64_t n = tiles * kNW; n < N; ++n) LinearTile<T, 1>(x, M, w, n, y, acc, xsum);
}

// Packs columns j0..j0+nr of B = W^T: dst[k * NR + j] = W[j0 + j, k0 + k] as f32.
struct PackWeightB {
  const Weight* w;
  void operator()(int j0, int nr, int k0, int kc, float* HWY_RESTRICT dst) const {
    const int nrf = gemm::NR();
    if (w->type == WeightType::kF32) {
      const float* src = static_cast<const float*>(w->data) + static_cast<size_t>(j0) * w->cols + k0;
      gemm::PackTransposed(src, w->cols, nr, kc, dst, nrf);
      return;
    }
    float* rows = gemm::Buffer(2, static_cast<size_t>(nrf) * gemm::kKC);  // [nr, kc] converted row slices
    for (int j = 0; j < nr; ++j) ConvertRow(*w, j0 + j, k0, kc, rows + static_cast<size_t>(j) * kc);
    gemm::PackTransposed(rows, kc, nr, kc, dst, nrf);
  }
};

void LinearManyRows(int nt, const float* x, int M, const Weight& w, float* y, bool acc) {
  const int N = static_cast<int>(w.rows), K = static_cast<int>(w.cols);
  const int nr = gemm::NR(), chunks = (N + nr - 1) / nr;
  const gemm::PackStridedA pa{x, K, false};
  const PackWeightB pb{&w};
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), n_t = omp_get_num_threads();
    const int n0 = std::min(N, static_cast<int>(static_cast<int64_t>(chunks) * t / n_t) * nr);
    const int n1 = std::min(N, static_cast<int>(static_cast<int64_t>(chunks) * (t + 1) / n_t) * nr);
    if (n0 < n1) gemm::GemmRange(M, n0, n1, K, 1.0f, pa, pb, acc ? 1.0f : 0.0f, y, N);
  }
}

}  // namespace

void LinearImpl(int nt, const float* x, int M, const Weight& w, float* y, bool acc) {
  if (M <= 0 || w.rows == 0) return;
  if (M >= kGemmMinRows) return LinearManyRows(nt, x, M, w, y, acc);
  switch (w.type) {
    case WeightType::kF32: return LinearFewRows<WeightType::kF32>(nt, x, M, w, y, acc);
    case WeightType::kF16: return LinearFewRows<WeightType::kF16>(nt, x, M, w, y, acc);
    case WeightType::kBF16: return LinearFewRows<WeightType::kBF16>(nt, x, M, w, y, acc);
    case WeightType::kQ8: return LinearFewRows<WeightType::kQ8>(nt, x, M, w, y, acc);
    case WeightType::kQ4: return LinearFewRows<WeightType::kQ4>(nt, x, M, w, y, acc);
  }
}

}  // namespace subq::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace subq::ops {
HWY_EXPORT(LinearImpl);

void Linear(const Threads& th, const float* x, int M, const Weight& w, float* y, bool accumulate) {
  // Small products run on one thread: a fork/join costs microseconds (milliseconds when the cores are
  // oversubscribed), more than a few thousand multiply-adds.
  constexpr int64_t kMinMacsPerThread = 1 << 16;
  const int64_t macs = static_cast<int64_t>(M) * w.rows * w.cols;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(th.n, macs / kMinMacsPerThread)));
  HWY_DYNAMIC_DISPATCH(LinearImpl)(nt, x, M, w, y, accumulate);
}
}  // namespace subq::ops
#endif
