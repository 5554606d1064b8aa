// Provisional CPU paths of the ops (f32 GEMM through OpenBLAS, other weight types by dequantised rows);
// ops/cpu/ replaces them with Highway kernels.
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace subq::ops {

void RmsNorm(const float* x, const float* w, float* out, int rows, int n, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * n;
    float* o = out + static_cast<int64_t>(r) * n;
    double ss = 0.0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
    for (int i = 0; i < n; ++i) o[i] = xr[i] * inv * w[i];
  }
}

void GatedRmsNorm(float* y, int ldy, const float* z, int ldz, const float* w, int rows, int n, int group, float eps) {
  for (int t = 0; t < rows; ++t) {
    float* yr = y + static_cast<size_t>(t) * ldy;
    const float* zr = z + static_cast<size_t>(t) * ldz;
    for (int i = 0; i < n; ++i) yr[i] *= Silu(zr[i]);  // gate before the norm
    for (int g0 = 0; g0 < n; g0 += group) {
      double ss = 0.0;
      for (int i = g0; i < g0 + group; ++i) ss += static_cast<double>(yr[i]) * yr[i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / group) + eps);
      for (int i = g0; i < g0 + group; ++i) yr[i] = yr[i] * inv * w[i];
    }
  }
}

void SoftmaxInPlace(float* x, int n) {
  float mx = *std::max_element(x, x + n);
  float s = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    s += x[i];
  }
  const float inv = 1.0f / s;
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

void SiluMul(float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] = Silu(a[i]) * b[i];
}

void SiluInPlace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = Silu(x[i]);
}

void Rope(float* x, int n_heads, int hd, int pos, const float* inv_freq, bool interleaved) {
  const int half = hd / 2;
  for (int i = 0; i < half; ++i) {
    const float ang = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(ang), s = std::sin(ang);
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + static_cast<size_t>(h) * hd;
      const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

void CausalConv(const float* in, int ldin, int L, int C, const float* w, const float* bias, int K, float* state,
                float* out, int ldout, bool silu) {
  const int S = K - 1;  // state rows
  for (int t = 0; t < L; ++t) {
    float* o = out + static_cast<size_t>(t) * ldout;
    for (int c = 0; c < C; ++c) o[c] = bias != nullptr ? bias[c] : 0.0f;
    for (int k = 0; k < K; ++k) {
      const int j = t + k - S;  // input token feeding tap k (negative: from the state)
      const float* src = j >= 0 ? in + static_cast<size_t>(j) * ldin : state + static_cast<size_t>(S + j) * C;
      for (int c = 0; c < C; ++c) o[c] += w[static_cast<size_t>(c) * K + k] * src[c];
    }
    if (silu)
      for (int c = 0; c < C; ++c) o[c] = Silu(o[c]);
  }
  // New state: the last S pre-conv inputs of (old state ++ in).
  if (S == 0) return;
  if (L >= S) {
    for (int r = 0; r < S; ++r)
      std::memcpy(state + static_cast<size_t>(r) * C, in + static_cast<size_t>(L - S + r) * ldin, C * 4);
  } else {
    std::memmove(state, state + static_cast<size_t>(L) * C, static_cast<size_t>(S - L) * C * 4);
    for (int r = 0; r < L; ++r)
      std::memcpy(state + static_cast<size_t>(S - L + r) * C, in + static_cast<size_t>(r) * ldin, C * 4);
  }
}

size_t AttentionScratchFloats(int hd) { return kAttentionKeyTile + static_cast<size_t>(hd); }

void AttendCausal(const float* q, int ldq, int L, int n_heads, int n_kv, int hd, const float* k, const float* v,
                  int ldkv, int past, float* out, int ldo, float* scratch) {
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float* s = scratch;                     // [tile] scores of one key tile
  float* acc = scratch + kAttentionKeyTile;  // [hd]
  for (int t = 0; t < L; ++t) {
    const int T = past + t + 1;  // causal: keys 0..past+t
    for (int h = 0; h < n_heads; ++h) {
      const float* qh = q + static_cast<size_t>(t) * ldq + h * hd;
      const int kh = h / group;
      float mx = -INFINITY, sum = 0.0f;
      std::fill(acc, acc + hd, 0.0f);
      for (int j0 = 0; j0 < T; j0 += kAttentionKeyTile) {
        const int n = std::min(kAttentionKeyTile, T - j0);
        float tmx = -INFINITY;
        for (int j = 0; j < n; ++j) {
          const float* kr = k + static_cast<size_t>(j0 + j) * ldkv + kh * hd;
          float d = 0.0f;
          for (int i = 0; i < hd; ++i) d += qh[i] * kr[i];
          s[j] = d * scale;
          tmx = std::max(tmx, s[j]);
        }
        const float nmx = std::max(mx, tmx);
        const float corr = std::exp(mx - nmx);  // 0 on the first tile
        sum *= corr;
        for (int i = 0; i < hd; ++i) acc[i] *= corr;
        for (int j = 0; j < n; ++j) {
          const float p = std::exp(s[j] - nmx);
          sum += p;
          const float* vr = v + static_cast<size_t>(j0 + j) * ldkv + kh * hd;
          for (int i = 0; i < hd; ++i) acc[i] += p * vr[i];
        }
        mx = nmx;
      }
      float* o = out + static_cast<size_t>(t) * ldo + h * hd;
      const float inv = 1.0f / sum;
      for (int i = 0; i < hd; ++i) o[i] = acc[i] * inv;
    }
  }
}

}  // namespace subq::ops
