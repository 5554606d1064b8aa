// Scalar references (see ssd_reference.h). Deliberately naive: readable loops that follow SPEC.md.
#include "mixers/ssd_reference.h"

#include <cmath>

namespace subq::reference {
namespace {

double Silu(double x) { return x / (1.0 + std::exp(-x)); }
double Softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

// y[t, o] = sum_i x[t, i] W[o, i]
std::vector<double> Linear(const std::vector<double>& x, const ops::Weight& W, int L) {
  const int out = static_cast<int>(W.rows), in = static_cast<int>(W.cols);
  std::vector<double> y(static_cast<size_t>(L) * out, 0.0);
  std::vector<float> row(in);
  for (int o = 0; o < out; ++o) {
    W.DequantizeRow(o, row.data());
    for (int t = 0; t < L; ++t) {
      double s = 0.0;
      for (int i = 0; i < in; ++i) s += x[static_cast<size_t>(t) * in + i] * row[i];
      y[static_cast<size_t>(t) * out + o] = s;
    }
  }
  return y;
}

// Causal depthwise conv on columns [c0, c0+C) of proj [L, rows]; zero history. w [C, K].
std::vector<double> Conv(const std::vector<double>& proj, int rows, int c0, int C, int L, const Tensor& w,
                         const Tensor& b, int K, bool silu) {
  std::vector<double> out(static_cast<size_t>(L) * C);
  for (int t = 0; t < L; ++t)
    for (int ch = 0; ch < C; ++ch) {
      double s = b.data[ch];
      for (int k = 0; k < K; ++k) {
        const int j = t - (K - 1) + k;
        if (j >= 0) s += w.data[static_cast<size_t>(ch) * K + k] * proj[static_cast<size_t>(j) * rows + c0 + ch];
      }
      out[static_cast<size_t>(t) * C + ch] = silu ? Silu(s) : s;
    }
  return out;
}

std::vector<double> ToDouble(const float* u, size_t n) { return std::vector<double>(u, u + n); }

}  // namespace

std::vector<double> SsdScan(int H, int P, int N, int G, int L, const std::vector<double>& x,
                            const std::vector<double>& b, const std::vector<double>& c,
                            const std::vector<double>& loga, std::vector<double>& state) {
  std::vector<double> y(static_cast<size_t>(L) * H * P, 0.0);
  for (int t = 0; t < L; ++t)
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / G);
      const double a = std::exp(loga[static_cast<size_t>(t) * H + h]);
      for (int p = 0; p < P; ++p) {
        double acc = 0.0;
        for (int n = 0; n < N; ++n) {
          double& s = state[(static_cast<size_t>(h) * P + p) * N + n];
          s = a * s + x[(static_cast<size_t>(t) * H + h) * P + p] * b[(static_cast<size_t>(t) * G + g) * N + n];
          acc += s * c[(static_cast<size_t>(t) * G + g) * N + n];
        }
        y[(static_cast<size_t>(t) * H + h) * P + p] = acc;
      }
    }
  return y;
}

std::vector<double> Mamba2Forward(const Mamba2Config& c, const Mamba2Weights& w, int dim, const float* u, int L) {
  const int H = c.n_heads, P = c.head_dim, N = c.state_size, G = c.n_groups, E = H * P;
  const int cd = E + 2 * G * N, rows = E + cd + H;
  const auto proj = Linear(ToDouble(u, static_cast<size_t>(L) * dim), w.in_proj, L);  // [L, z | xBC | dt]
  const auto xbc = Conv(proj, rows, E, cd, L, w.conv_w, w.conv_b, c.conv_kernel, /*silu=*/true);
  std::vector<double> X(static_cast<size_t>(L) * E), Bm(static_cast<size_t>(L) * G * N), Cm(Bm.size()),
      loga(static_cast<size_t>(L) * H);
  for (int t = 0; t < L; ++t) {
    for (int h = 0; h < H; ++h) {
      const double dt = Softplus(proj[static_cast<size_t>(t) * rows + E + cd + h] + w.dt_bias.data[h]);
      loga[static_cast<size_t>(t) * H + h] = dt * -std::exp(static_cast<double>(w.A_log.data[h]));
      for (int p = 0; p < P; ++p) X[static_cast<size_t>(t) * E + h * P + p] = xbc[static_cast<size_t>(t) * cd + h * P + p] * dt;
    }
    for (int i = 0; i < G * N; ++i) {
      Bm[static_cast<size_t>(t) * G * N + i] = xbc[static_cast<size_t>(t) * cd + E + i];
      Cm[static_cast<size_t>(t) * G * N + i] = xbc[static_cast<size_t>(t) * cd + E + G * N + i];
    }
  }
  std::vector<double> state(static_cast<size_t>(H) * P * N, 0.0);
  auto y = SsdScan(H, P, N, G, L, X, Bm, Cm, loga, state);
  const int gs = c.norm_grouped ? E / G : E;
  for (int t = 0; t < L; ++t) {
    double* yr = y.data() + static_cast<size_t>(t) * E;
    for (int i = 0; i < E; ++i) {
      yr[i] += w.D.data[i / P] * xbc[static_cast<size_t>(t) * cd + i];
      yr[i] *= Silu(proj[static_cast<size_t>(t) * rows + i]);
    }
    for (int g0 = 0; g0 < E; g0 += gs) {
      double ss = 0.0;
      for (int i = g0; i < g0 + gs; ++i) ss += yr[i] * yr[i];
      const double inv = 1.0 / std::sqrt(ss / gs + c.norm_eps);
      for (int i = g0; i < g0 + gs; ++i) yr[i] *= inv * w.norm_w.data[i];
    }
  }
  return Linear(y, w.out_proj, L);
}

std::vector<double> DiscreteMamba2Forward(const DiscreteMamba2Config& c, const DiscreteMamba2Weights& w, int dim,
                                        const float* u, int L) {
  const int H = c.n_v_heads, P = c.head_dim, N = c.d_state, G = c.n_qk_heads, E = H * P;
  const int cd = E + 2 * G * N, rows = cd + E + H;
  const auto proj = Linear(ToDouble(u, static_cast<size_t>(L) * dim), w.in_proj, L);  // [L, xBC | z | A_log]
  const auto xbc = Conv(proj, rows, 0, cd, L, w.conv_w, w.conv_b, c.conv_kernel, /*silu=*/false);
  std::vector<double> X(static_cast<size_t>(L) * E), Bm(static_cast<size_t>(L) * G * N), Cm(Bm.size()),
      loga(static_cast<size_t>(L) * H);
  for (int t = 0; t < L; ++t) {
    for (int h = 0; h < H; ++h) loga[static_cast<size_t>(t) * H + h] = -Softplus(proj[static_cast<size_t>(t) * rows + cd + E + h]);
    for (int i = 0; i < E; ++i) X[static_cast<size_t>(t) * E + i] = xbc[static_cast<size_t>(t) * cd + i];
    for (int i = 0; i < G * N; ++i) {
      Bm[static_cast<size_t>(t) * G * N + i] = xbc[static_cast<size_t>(t) * cd + E + i];
      Cm[static_cast<size_t>(t) * G * N + i] = xbc[static_cast<size_t>(t) * cd + E + G * N + i];
    }
  }
  std::vector<double> state(static_cast<size_t>(H) * P * N, 0.0);
  auto y = SsdScan(H, P, N, G, L, X, Bm, Cm, loga, state);
  for (int t = 0; t < L; ++t)
    for (int i = 0; i < E; ++i) {
      double& v = y[static_cast<size_t>(t) * E + i];
      v += w.D.data[i / P] * X[static_cast<size_t>(t) * E + i];
      v *= Silu(proj[static_cast<size_t>(t) * rows + cd + i] + w.z_bias.data[i]);
    }
  return Linear(y, w.out_proj, L);
}

}  // namespace subq::reference
