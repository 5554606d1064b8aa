// Chunked SSD scan and recurrent step (see ssd.h), Highway SIMD with runtime dispatch. The step's
// P x N update is vectorised along N; the chunked scan's products go through ops::Gemm (our packed
// kernel) and its decay factors through Highway's Exp; both split work over heads with OpenMP.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/ssd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "ops/ops.h"
#include "ops/ssd.h"

#ifndef SUBQ_OPS_SSD_SCRATCH_  // this file is compiled once per target
#define SUBQ_OPS_SSD_SCRATCH_
namespace subq::ops {
namespace {
size_t Pad16(size_t n) { return (n + 15) / 16 * 16; }  // keeps every part 64-byte aligned relative to the base

// Scratch of the chunked scan, shared: cb [G][Q, Q], acum [H][Q] (double), xw [Q, H*P]; then per
// thread: m [Q, Q], decay [Q].
size_t SharedFloats(const SsdDims& d, size_t Q) {
  return Pad16(static_cast<size_t>(d.G) * Q * Q) + Pad16(2 * static_cast<size_t>(d.H) * Q) +
         Pad16(Q * static_cast<size_t>(d.H) * d.P);
}
size_t PerThreadFloats(const SsdDims& /*d*/, size_t Q) { return Pad16(Q * Q) + Pad16(Q); }
}  // namespace
}  // namespace subq::ops
#endif

HWY_BEFORE_NAMESPACE();
namespace subq::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace {
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Decay factors below exp(kMinLogDecay) ~ 1e-26 are flushed to zero: they change no f32 sum they enter
// (their terms sit ~2^-86 below the terms they are added to), and left alone they make denormal
// products, which run ~10x slower through the FMA units (a Mamba-2 prefill spent 2/3 of its scan in
// them).
constexpr float kMinLogDecay = -60.0f;
inline float DecayExp(double log_decay) {
  return log_decay < kMinLogDecay ? 0.0f : static_cast<float>(std::exp(log_decay));
}

// One token of head h: S = a S + x b^T, y = S c.
void StepHead(const SsdDims& d, int h, const float* x, const float* b, const float* c, const float* loga, float* state,
              float* y) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  const int hpg = d.H / d.G, N = d.N;
  const float a = DecayExp(loga[h]);
  const float* bg = b + (h / hpg) * N;                    // [N]
  const float* cg = c + (h / hpg) * N;                    // [N]
  float* S = state + static_cast<size_t>(h) * d.P * N;    // [P, N]
  const VF va = hn::Set(df, a);
  for (int p = 0; p < d.P; ++p) {
    float* row = S + static_cast<size_t>(p) * N;
    const float xp = x[h * d.P + p];
    const VF vx = hn::Set(df, xp);
    VF acc = hn::Zero(df);
    int n = 0;
    for (; n + V <= N; n += V) {
      const VF s = hn::MulAdd(va, hn::LoadU(df, row + n), hn::Mul(vx, hn::LoadU(df, bg + n)));
      hn::StoreU(s, df, row + n);
      acc = hn::MulAdd(s, hn::LoadU(df, cg + n), acc);
    }
    float yp = hn::GetLane(hn::SumOfLanes(df, acc));
    for (; n < N; ++n) {
      row[n] = a * row[n] + xp * bg[n];
      yp += row[n] * cg[n];
    }
    y[h * d.P + p] = yp;
  }
}

// m[l, s] = cb[l, s] exp(acum_l - acum_s) for s <= l, else 0 ([q, q]).
void MaskedDecay(const double* acum, const float* cb, float* m, float* decay, int q) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  for (int l = 0; l < q; ++l) {
    const float* cr = cb + static_cast<size_t>(l) * q;
    float* mr = m + static_cast<size_t>(l) * q;
    // Differences in double: the cumulative sums are large, their differences small.
    for (int j = 0; j <= l; ++j) decay[j] = static_cast<float>(acum[l] - acum[j]);
    int j = 0;
    const VF vmin = hn::Set(df, kMinLogDecay);
    for (; j + V <= l + 1; j += V) {
      const VF dv = hn::LoadU(df, decay + j);
      hn::StoreU(hn::IfThenElseZero(hn::Ge(dv, vmin), hn::Mul(hn::LoadU(df, cr + j), hn::Exp(df, dv))), df, mr + j);
    }
    for (; j <= l; ++j) mr[j] = cr[j] * DecayExp(decay[j]);
    for (j = l + 1; j < q; ++j) mr[j] = 0.0f;
  }
}

// The intra-chunk part of head h for chunk [c0, c0 + q) (SPEC section 2, step 1 and the scaling of step
// 4), given cb = C B^T of its group, the head's cumulative log decays acum [q] and, unless state_zero, the
// inter-chunk output C_l . S_prev already in Y:
//   Y_l = exp(acum_l) Y_l + sum_{s <= l} cb[l, s] exp(acum_l - acum_s) X_s
// It also writes the head's columns of xw (X_s weighted by its decay to the chunk's end) and scales the
// head's state by the chunk's total decay, ready for the state GEMM of the group.
void ChunkHead(const SsdDims& d, int h, int c0, int q, const float* x, int ldx, const double* acum, float* y,
               int ldy, const float* cb, bool state_zero, float* state, float* xw, float* scratch, int Q) {
  const int P = d.P, N = d.N, HP = d.H * d.P;
  float* m = scratch;                                          // [q, q]
  float* decay = m + Pad16(static_cast<size_t>(Q) * Q);        // [q]
  const float* Xh = x + static_cast<size_t>(c0) * ldx + h * P;  // rows [q, P], stride ldx
  float* Yh = y + static_cast<size_t>(c0) * ldy + h * P;        // rows [q, P], stride ldy
  MaskedDecay(acum, cb, m, decay, q);
  if (!state_zero)
    for (int l = 0; l < q; ++l) {
      const float e = DecayExp(acum[l]);
      float* yr = Yh + static_cast<size_t>(l) * ldy;
      for (int p = 0; p < P; ++p) yr[p] *= e;
    }
  Gemm(false, false, q, P, q, 1.0f, m, q, Xh, ldx, state_zero ? 0.0f : 1.0f, Yh, ldy);  // Y += m X  [q, P]
  const double last = acum[q - 1];
  for (int j = 0; j < q; ++j) {  // xw[j, h] = exp(acum_last - acum_j) X_j  [q, P] of [q, H*P]
    const float w = DecayExp(last - acum[j]);
    const float* xr = Xh + static_cast<size_t>(j) * ldx;
    float* xwr = xw + static_cast<size_t>(j) * HP + h * P;
    for (int p = 0; p < P; ++p) xwr[p] = xr[p] * w;
  }
  if (!state_zero) {  // S *= exp(acum_last)  [P, N]
    const float e = DecayExp(last);
    float* S = state + static_cast<size_t>(h) * P * N;
    for (size_t i = 0; i < static_cast<size_t>(P) * N; ++i) S[i] *= e;
  }
}

}  // namespace

void StepImpl(int nt, const SsdDims& d, const float* x, const float* b, const float* c, const float* loga,
              float* state, float* y) {
  // Small states on one thread: a fork/join costs more than updating them.
  nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, int64_t{d.H} * d.P * d.N / (1 << 14))));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int h = 0; h < d.H; ++h) StepHead(d, h, x, b, c, loga, state, y);
}

void StepBatchImpl(int nt, const SsdDims& d, int B, const float* x, int ldx, const float* b, const float* c, int ldbc,
                   const float* loga, int ldloga, float* const* states, float* y, int ldy) {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int it = 0; it < B * d.H; ++it) {
    const int i = it / d.H;
    StepHead(d, it % d.H, x + static_cast<size_t>(i) * ldx, b + static_cast<size_t>(i) * ldbc,
             c + static_cast<size_t>(i) * ldbc, loga + static_cast<size_t>(i) * ldloga, states[i],
             y + static_cast<size_t>(i) * ldy);
  }
}

// Per chunk: the products that share C or B across the heads of a group run as one GEMM over all those
// heads (inter-chunk output C S^T and the state update xw^T B: [q, hpg*P] and [hpg*P, N], large enough
// for the packed kernel to run near its peak); only the masked intra-chunk product is per head.
void ScanImpl(int nt, const SsdDims& d, int L, int chunk, const float* x, int ldx, const float* b, const float* c,
              int ldbc, const float* loga, float* state, float* y, int ldy, float* scratch) {
  if (L <= 0) return;
  const int Q = std::max(1, std::min(chunk, L)), H = d.H, P = d.P, N = d.N, hpg = d.H / d.G, HP = d.H * d.P;
  const Threads th{nt};
  float* cb = scratch;                                                              // [G][Q, Q]
  double* acum = reinterpret_cast<double*>(cb + Pad16(static_cast<size_t>(d.G) * Q * Q));  // [H][Q]
  float* xw = cb + Pad16(static_cast<size_t>(d.G) * Q * Q) + Pad16(2 * static_cast<size_t>(H) * Q);  // [Q, H*P]
  float* per_thread = scratch + SharedFloats(d, Q);
  const size_t per = PerThreadFloats(d, Q);
  // A fresh state contributes nothing to the first chunk; skip its GEMM then.
  bool state_zero = std::all_of(state, state + static_cast<size_t>(H) * P * N, [](float v) { return v == 0.0f; });
  for (int c0 = 0; c0 < L; c0 += Q) {
    const int q = std::min(Q, L - c0);
    const float* Cc = c + static_cast<size_t>(c0) * ldbc;  // rows [q, G*N]
    const float* Bc = b + static_cast<size_t>(c0) * ldbc;
    float* Yc = y + static_cast<size_t>(c0) * ldy;         // rows [q, H*P]
    for (int h = 0; h < H; ++h) {  // acum[h][l] = sum_{j <= l} loga_j
      double sum = 0.0;
      for (int l = 0; l < q; ++l) acum[static_cast<size_t>(h) * Q + l] = sum += loga[static_cast<size_t>(c0 + l) * H + h];
    }
    for (int g = 0; g < d.G; ++g) {
      // cb[l, s] = C_l . B_s  [q, q]
      Gemm(th, false, true, q, q, N, 1.0f, Cc + g * N, ldbc, Bc + g * N, ldbc, 0.0f,
           cb + static_cast<size_t>(g) * Q * Q, q);
      // Y[l, heads of g] = C_l . S_h^T  [q, hpg*P] (the group's states are rows [hpg*P, N])
      if (!state_zero)
        Gemm(th, false, true, q, hpg * P, N, 1.0f, Cc + g * N, ldbc, state + static_cast<size_t>(g) * hpg * P * N, N,
             0.0f, Yc + g * hpg * P, ldy);
    }
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int h = 0; h < H; ++h)
      ChunkHead(d, h, c0, q, x, ldx, acum + static_cast<size_t>(h) * Q, y, ldy,
                cb + static_cast<size_t>(h / hpg) * Q * Q, state_zero, state, xw,
                per_thread + per * omp_get_thread_num(), Q);
    // S[heads of g] += xw[:, heads of g]^T B_g  [hpg*P, N]
    for (int g = 0; g < d.G; ++g)
      Gemm(th, true, false, hpg * P, N, q, 1.0f, xw + g * hpg * P, HP, Bc + g * N, ldbc, state_zero ? 0.0f : 1.0f,
           state + static_cast<size_t>(g) * hpg * P * N, N);
    state_zero = false;
  }
}

}  // namespace subq::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace subq::ops {
HWY_EXPORT(StepImpl);
HWY_EXPORT(StepBatchImpl);
HWY_EXPORT(ScanImpl);

size_t SsdScratchFloats(const SsdDims& d, int chunk) { return SsdScratchFloats(Threads{1}, d, chunk); }
size_t SsdScratchFloats(const Threads& th, const SsdDims& d, int chunk) {
  const size_t Q = static_cast<size_t>(std::max(1, chunk));
  return SharedFloats(d, Q) + static_cast<size_t>(std::max(1, th.n)) * PerThreadFloats(d, Q);
}

void SsdStep(const SsdDims& d, const float* x, const float* b, const float* c, const float* loga, float* state,
             float* y) {
  HWY_DYNAMIC_DISPATCH(StepImpl)(1, d, x, b, c, loga, state, y);
}
void SsdStep(const Threads& th, const SsdDims& d, const float* x, const float* b, const float* c, const float* loga,
             float* state, float* y) {
  HWY_DYNAMIC_DISPATCH(StepImpl)(std::max(1, th.n), d, x, b, c, loga, state, y);
}
void SsdStepBatch(const Threads& th, const SsdDims& d, int B, const float* x, int ldx, const float* b, const float* c,
                  int ldbc, const float* loga, int ldloga, float* const* states, float* y, int ldy) {
  HWY_DYNAMIC_DISPATCH(StepBatchImpl)(std::max(1, th.n), d, B, x, ldx, b, c, ldbc, loga, ldloga, states, y, ldy);
}

void SsdChunkedScan(const SsdDims& d, int L, int chunk, const float* x, int ldx, const float* b, const float* c,
                    int ldbc, const float* loga, float* state, float* y, int ldy, float* scratch) {
  HWY_DYNAMIC_DISPATCH(ScanImpl)(1, d, L, chunk, x, ldx, b, c, ldbc, loga, state, y, ldy, scratch);
}
void SsdChunkedScan(const Threads& th, const SsdDims& d, int L, int chunk, const float* x, int ldx, const float* b,
                    const float* c, int ldbc, const float* loga, float* state, float* y, int ldy, float* scratch) {
  HWY_DYNAMIC_DISPATCH(ScanImpl)(std::max(1, th.n), d, L, chunk, x, ldx, b, c, ldbc, loga, state, y, ldy, scratch);
}
}  // namespace subq::ops
#endif
