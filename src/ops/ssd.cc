// Chunked SSD scan and recurrent step (see ssd.h).
#include "ops/ssd.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "ops/ops.h"

namespace subq::ops {
namespace {

// exp(x) for x <= 0 (decay factors), written so the compiler vectorises the loops that call it.
// Range reduction x*log2(e) = n + f with |f| <= 1/2, 2^f by its degree-7 Taylor series (relative
// error < 1e-8 before float rounding); x below -87 gives ~0, as exp would.
inline float ExpNonPos(float x) {
  x = std::max(x, -87.0f);
  const float t = x * 1.4426950408889634f;
  const float n = std::floor(t + 0.5f);
  const float f = (t - n) * 0.6931471805599453f;  // |f| <= ln2/2
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const int e = static_cast<int>(n) + 127;  // >= 1 since n >= -126
  uint32_t bits = static_cast<uint32_t>(e) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// Views of the chunked scan's scratch: acum [Q] (double, first), cb/m [Q, Q], xw [Q, P], decay [Q].
struct Scratch {
  Scratch(float* base, int Q, int P) {
    acum = reinterpret_cast<double*>(base);
    cb = base + 2 * static_cast<size_t>(Q);
    m = cb + static_cast<size_t>(Q) * Q;
    xw = m + static_cast<size_t>(Q) * Q;
    decay = xw + static_cast<size_t>(Q) * P;
  }
  double* acum;
  float *cb, *m, *xw, *decay;
};

}  // namespace

size_t SsdScratchFloats(const SsdDims& d, int chunk) {
  const size_t Q = static_cast<size_t>(chunk < 1 ? 1 : chunk);
  return 2 * Q + 2 * Q * Q + Q * static_cast<size_t>(d.P) + Q;
}

void SsdStep(const SsdDims& d, const float* x, const float* b, const float* c, const float* loga, float* state,
             float* y) {
  const int hpg = d.H / d.G;
  for (int h = 0; h < d.H; ++h) {
    const float a = std::exp(loga[h]);
    const float* bg = b + (h / hpg) * d.N;  // [N]
    const float* cg = c + (h / hpg) * d.N;  // [N]
    const float* xh = x + h * d.P;         // [P]
    float* S = state + static_cast<size_t>(h) * d.P * d.N;  // [P, N]
    for (int p = 0; p < d.P; ++p) {
      float* row = S + static_cast<size_t>(p) * d.N;
      const float xp = xh[p];
      float acc = 0.0f;
      for (int n = 0; n < d.N; ++n) {
        row[n] = a * row[n] + xp * bg[n];
        acc += row[n] * cg[n];
      }
      y[h * d.P + p] = acc;
    }
  }
}

void SsdChunkedScan(const SsdDims& d, int L, int chunk, const float* x, int ldx, const float* b, const float* c,
                    int ldbc, const float* loga, float* state, float* y, int ldy, float* scratch) {
  const int H = d.H, P = d.P, N = d.N, hpg = H / d.G;
  const int Q = std::max(1, std::min(chunk, L));
  Scratch s(scratch, Q, P);
  // A fresh state contributes nothing to the first chunk; skip its GEMM then.
  bool state_zero = std::all_of(state, state + static_cast<size_t>(H) * P * N, [](float v) { return v == 0.0f; });
  for (int c0 = 0; c0 < L; c0 += Q) {
    const int q = std::min(Q, L - c0);
    for (int g = 0; g < d.G; ++g) {
      const float* Bg = b + static_cast<size_t>(c0) * ldbc + g * N;  // rows [q, N], stride ldbc
      const float* Cg = c + static_cast<size_t>(c0) * ldbc + g * N;  // rows [q, N], stride ldbc
      // cb[l, s] = C_l . B_s  [q, q]
      Gemm(false, true, q, q, N, 1.0f, Cg, ldbc, Bg, ldbc, 0.0f, s.cb, q);
      for (int h = g * hpg; h < (g + 1) * hpg; ++h) {
        const float* Xh = x + static_cast<size_t>(c0) * ldx + h * P;  // rows [q, P], stride ldx
        float* Yh = y + static_cast<size_t>(c0) * ldy + h * P;        // rows [q, P], stride ldy
        float* S = state + static_cast<size_t>(h) * P * N;            // [P, N]
        double acc = 0.0;
        for (int l = 0; l < q; ++l) s.acum[l] = acc += loga[static_cast<size_t>(c0 + l) * H + h];
        // Masked decay: m[l, s] = cb[l, s] * exp(acum_l - acum_s) for s <= l, else 0.
        for (int l = 0; l < q; ++l) {
          float* mr = s.m + static_cast<size_t>(l) * q;
          const float* cr = s.cb + static_cast<size_t>(l) * q;
          const float al = static_cast<float>(s.acum[l]);
          for (int j = 0; j <= l; ++j) s.decay[j] = al - static_cast<float>(s.acum[j]);
          for (int j = 0; j <= l; ++j) mr[j] = cr[j] * ExpNonPos(s.decay[j]);
          for (int j = l + 1; j < q; ++j) mr[j] = 0.0f;
        }
        // Y_off[l] = exp(acum_l) C_l . S_prev   [q, P]
        if (!state_zero) {
          Gemm(false, true, q, P, N, 1.0f, Cg, ldbc, S, N, 0.0f, Yh, ldy);
          for (int l = 0; l < q; ++l) {
            const float e = static_cast<float>(std::exp(s.acum[l]));
            float* yr = Yh + static_cast<size_t>(l) * ldy;
            for (int p = 0; p < P; ++p) yr[p] *= e;
          }
        }
        // Y += m X   [q, P]
        Gemm(false, false, q, P, q, 1.0f, s.m, q, Xh, ldx, state_zero ? 0.0f : 1.0f, Yh, ldy);
        // S = exp(acum_last) S + sum_s exp(acum_last - acum_s) X_s B_s^T
        const double last = s.acum[q - 1];
        const float total = static_cast<float>(std::exp(last));
        for (int j = 0; j < q; ++j) {
          const float w = static_cast<float>(std::exp(last - s.acum[j]));
          const float* xr = Xh + static_cast<size_t>(j) * ldx;
          float* xwr = s.xw + static_cast<size_t>(j) * P;
          for (int p = 0; p < P; ++p) xwr[p] = xr[p] * w;
        }
        if (state_zero) {
          Gemm(true, false, P, N, q, 1.0f, s.xw, P, Bg, ldbc, 0.0f, S, N);
        } else {
          for (size_t i = 0; i < static_cast<size_t>(P) * N; ++i) S[i] *= total;
          Gemm(true, false, P, N, q, 1.0f, s.xw, P, Bg, ldbc, 1.0f, S, N);
        }
      }
    }
    state_zero = false;
  }
}

}  // namespace subq::ops
