#include "ops/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace subq::ops::ref {
namespace {
double Silu(double x) { return x / (1.0 + std::exp(-x)); }
}  // namespace

void Linear(const float* x, int M, const Weight& w, float* y, bool accumulate) {
  const int N = static_cast<int>(w.rows), K = static_cast<int>(w.cols);
  std::vector<float> row(K);  // [K] row n of W as f32
  for (int n = 0; n < N; ++n) {
    w.DequantizeRow(n, row.data());
    for (int m = 0; m < M; ++m) {
      double acc = accumulate ? y[static_cast<size_t>(m) * N + n] : 0.0;
      for (int k = 0; k < K; ++k) acc += static_cast<double>(x[static_cast<size_t>(m) * K + k]) * row[k];
      y[static_cast<size_t>(m) * N + n] = static_cast<float>(acc);
    }
  }
}

void Gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int k = 0; k < K; ++k) {
        const float a = trans_a ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
        const float b = trans_b ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j];
        acc += static_cast<double>(a) * b;
      }
      float& c = C[static_cast<size_t>(i) * ldc + j];
      c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
  }
}

void RmsNorm(const float* x, const float* w, float* out, int rows, int n, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * n;
    float* o = out + static_cast<size_t>(r) * n;
    double ss = 0.0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(ss / n + eps);
    for (int i = 0; i < n; ++i) o[i] = static_cast<float>(xr[i] * inv * w[i]);
  }
}

void GatedRmsNorm(float* y, int ldy, const float* z, int ldz, const float* w, int rows, int n, int group, float eps) {
  std::vector<double> g(n);  // [n] gated row
  for (int t = 0; t < rows; ++t) {
    float* yr = y + static_cast<size_t>(t) * ldy;
    const float* zr = z + static_cast<size_t>(t) * ldz;
    for (int i = 0; i < n; ++i) g[i] = yr[i] * Silu(zr[i]);  // gate before the norm
    for (int g0 = 0; g0 < n; g0 += group) {
      double ss = 0.0;
      for (int i = g0; i < g0 + group; ++i) ss += g[i] * g[i];
      const double inv = 1.0 / std::sqrt(ss / group + eps);
      for (int i = g0; i < g0 + group; ++i) yr[i] = static_cast<float>(g[i] * inv * w[i]);
    }
  }
}

void SoftmaxInPlace(float* x, int n) {
  const double mx = *std::max_element(x, x + n);
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  for (int i = 0; i < n; ++i) x[i] = static_cast<float>(std::exp(x[i] - mx) / s);
}

void SiluMul(float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] = static_cast<float>(Silu(a[i]) * b[i]);
}

void SiluInPlace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(Silu(x[i]));
}

void Rope(float* x, int n_heads, int hd, int pos, const float* inv_freq, bool interleaved) {
  const int half = hd / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * hd;
    for (int i = 0; i < half; ++i) {
      // The angle is formed in f32 like the kernels (pos * inv_freq rounds before cos/sin).
      const double ang = static_cast<float>(pos) * inv_freq[i];
      const double c = std::cos(ang), s = std::sin(ang);
      const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
      const double x0 = v[a], x1 = v[b];
      v[a] = static_cast<float>(x0 * c - x1 * s);
      v[b] = static_cast<float>(x0 * s + x1 * c);
    }
  }
}

void CausalConv(const float* in, int ldin, int L, int C, const float* w, const float* bias, int K, float* state,
                float* out, int ldout, bool silu) {
  const int S = K - 1;
  // hist [S + L, C]: the old state followed by the new inputs.
  std::vector<float> hist(static_cast<size_t>(S + L) * C);
  std::memcpy(hist.data(), state, static_cast<size_t>(S) * C * 4);
  for (int t = 0; t < L; ++t) std::memcpy(&hist[static_cast<size_t>(S + t) * C], in + static_cast<size_t>(t) * ldin, C * 4);
  for (int t = 0; t < L; ++t) {
    for (int c = 0; c < C; ++c) {
      double acc = bias != nullptr ? bias[c] : 0.0;
      for (int k = 0; k < K; ++k) acc += static_cast<double>(w[static_cast<size_t>(c) * K + k]) * hist[static_cast<size_t>(t + k) * C + c];
      out[static_cast<size_t>(t) * ldout + c] = static_cast<float>(silu ? Silu(acc) : acc);
    }
  }
  std::memcpy(state, &hist[static_cast<size_t>(L) * C], static_cast<size_t>(S) * C * 4);
}

void AttendCausal(const float* q, int ldq, int L, int n_heads, int n_kv, int hd, const float* k, const float* v,
                  int ldkv, int past, float* out, int ldo) {
  const int group = n_heads / n_kv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> s(past + L);  // [T] scores of one query
  for (int t = 0; t < L; ++t) {
    const int T = past + t + 1;
    for (int h = 0; h < n_heads; ++h) {
      const float* qh = q + static_cast<size_t>(t) * ldq + h * hd;
      const int kh = h / group;
      double mx = -INFINITY;
      for (int j = 0; j < T; ++j) {
        const float* kr = k + static_cast<size_t>(j) * ldkv + kh * hd;
        double d = 0.0;
        for (int i = 0; i < hd; ++i) d += static_cast<double>(qh[i]) * kr[i];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0.0;
      for (int j = 0; j < T; ++j) sum += s[j] = std::exp(s[j] - mx);
      for (int i = 0; i < hd; ++i) {
        double acc = 0.0;
        for (int j = 0; j < T; ++j) acc += s[j] * v[static_cast<size_t>(j) * ldkv + kh * hd + i];
        out[static_cast<size_t>(t) * ldo + h * hd + i] = static_cast<float>(acc / sum);
      }
    }
  }
}

void SsdStep(const SsdDims& d, const float* x, const float* b, const float* c, const float* loga, float* state,
             float* y) {
  const int hpg = d.H / d.G;
  for (int h = 0; h < d.H; ++h) {
    const double a = std::exp(static_cast<double>(loga[h]));
    const float* bg = b + (h / hpg) * d.N;                  // [N]
    const float* cg = c + (h / hpg) * d.N;                  // [N]
    float* S = state + static_cast<size_t>(h) * d.P * d.N;  // [P, N]
    for (int p = 0; p < d.P; ++p) {
      double acc = 0.0;
      for (int n = 0; n < d.N; ++n) {
        float& s = S[static_cast<size_t>(p) * d.N + n];
        s = static_cast<float>(a * s + static_cast<double>(x[h * d.P + p]) * bg[n]);
        acc += static_cast<double>(s) * cg[n];
      }
      y[h * d.P + p] = static_cast<float>(acc);
    }
  }
}

void SsdScan(const SsdDims& d, int L, const float* x, int ldx, const float* b, const float* c, int ldbc,
             const float* loga, float* state, float* y, int ldy) {
  for (int t = 0; t < L; ++t)
    ref::SsdStep(d, x + static_cast<size_t>(t) * ldx, b + static_cast<size_t>(t) * ldbc, c + static_cast<size_t>(t) * ldbc,
            loga + static_cast<size_t>(t) * d.H, state, y + static_cast<size_t>(t) * ldy);
}

}  // namespace subq::ops::ref
