// Gated DeltaNet: step == chunked WY prefill == materialized matrix == a scalar double-precision
// reference recurrence, with and without GVA (more v-heads than q/k heads).
#include "mixers/gated_deltanet.h"

#include <gtest/gtest.h>

#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <random>

#include "mixers/mixers.h"

namespace subq {
namespace {

constexpr int kDim = 16;

struct Case {
  int qk_heads, v_heads;
};
void PrintTo(const Case& c, std::ostream* os) { *os << "qk" << c.qk_heads << "_v" << c.v_heads; }
std::string Name(const ::testing::TestParamInfo<Case>& i) {
  return fmt::format("qk{}_v{}", i.param.qk_heads, i.param.v_heads);
}

Tensor Rand(std::vector<int64_t> shape, std::mt19937& rng, float scale, float mean = 0.0f) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& x : t.data) x = mean + scale * nd(rng);
  return t;
}

GatedDeltaNetConfig MakeConfig(const Case& c) {
  GatedDeltaNetConfig cfg;
  cfg.n_qk_heads = c.qk_heads, cfg.n_v_heads = c.v_heads, cfg.head_k_dim = 8, cfg.head_v_dim = 6;
  cfg.conv_kernel = 4, cfg.chunk_size = 8, cfg.norm_eps = 1e-5f;
  return cfg;
}

GatedDeltaNetWeights MakeWeights(const GatedDeltaNetConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t Ck = c.n_qk_heads * c.head_k_dim, Cv = c.n_v_heads * c.head_v_dim, Hv = c.n_v_heads, K = c.conv_kernel;
  GatedDeltaNetWeights w;
  w.q_proj = Rand({Ck, kDim}, rng, 0.3f), w.k_proj = Rand({Ck, kDim}, rng, 0.3f),
  w.v_proj = Rand({Cv, kDim}, rng, 0.3f);
  w.a_proj = Rand({Hv, kDim}, rng, 0.3f), w.b_proj = Rand({Hv, kDim}, rng, 0.3f);
  w.A_log = Rand({Hv}, rng, 0.3f, -0.5f), w.dt_bias = Rand({Hv}, rng, 0.5f, -2.0f);
  w.q_conv = Rand({Ck, 1, K}, rng, 0.5f), w.k_conv = Rand({Ck, 1, K}, rng, 0.5f),
  w.v_conv = Rand({Cv, 1, K}, rng, 0.5f);
  w.g_proj = Rand({Cv, kDim}, rng, 0.3f), w.o_norm = Rand({c.head_v_dim}, rng, 0.2f, 1.0f);
  w.o_proj = Rand({kDim, Cv}, rng, 0.3f);
  return w;
}

// Scalar reference in double, token by token, from SPEC section 5 (fla naive recurrence).
struct RefState {
  std::vector<double> hist;  // [K-1, Ck + Ck + Cv] pre-conv inputs, oldest first
  std::vector<double> S;     // [Hv, dk, dv]
};
RefState RefFrom(const GatedDeltaNetState& s, const GatedDeltaNetConfig& c) {
  const int Ck = c.n_qk_heads * c.head_k_dim, Cv = c.n_v_heads * c.head_v_dim, W = 2 * Ck + Cv;
  RefState r;
  r.hist.assign(static_cast<size_t>(c.conv_kernel - 1) * W, 0.0);
  for (int j = 0; j < c.conv_kernel - 1; ++j) {
    for (int i = 0; i < Ck; ++i) r.hist[j * W + i] = s.q_conv.data[j * Ck + i];
    for (int i = 0; i < Ck; ++i) r.hist[j * W + Ck + i] = s.k_conv.data[j * Ck + i];
    for (int i = 0; i < Cv; ++i) r.hist[j * W + 2 * Ck + i] = s.v_conv.data[j * Cv + i];
  }
  r.S.assign(s.S.data.begin(), s.S.data.end());
  return r;
}

std::vector<double> RefGdn(const GatedDeltaNetConfig& c, const GatedDeltaNetWeights& w, const float* u, int L,
                           RefState& st) {
  const int Hk = c.n_qk_heads, Hv = c.n_v_heads, dk = c.head_k_dim, dv = c.head_v_dim, K = c.conv_kernel;
  const int Ck = Hk * dk, Cv = Hv * dv, W = 2 * Ck + Cv;
  auto lin = [&](const Tensor& m, const float* x, int rows) {
    std::vector<double> y(rows, 0.0);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < kDim; ++j) y[i] += double(m.data[i * kDim + j]) * x[j];
    return y;
  };
  auto silu = [](double x) { return x / (1 + std::exp(-x)); };
  std::vector<double> out(static_cast<size_t>(L) * kDim, 0.0);
  for (int l = 0; l < L; ++l) {
    const float* x = u + l * kDim;
    std::vector<double> cur = lin(w.q_proj, x, Ck), kk = lin(w.k_proj, x, Ck), vv = lin(w.v_proj, x, Cv);
    cur.insert(cur.end(), kk.begin(), kk.end()), cur.insert(cur.end(), vv.begin(), vv.end());  // [W]
    std::vector<double> conv(W);
    for (int ch = 0; ch < W; ++ch) {
      const Tensor& cw = ch < Ck ? w.q_conv : ch < 2 * Ck ? w.k_conv : w.v_conv;
      const int cc = ch < Ck ? ch : ch < 2 * Ck ? ch - Ck : ch - 2 * Ck;
      double acc = cw.data[cc * K + K - 1] * cur[ch];
      for (int j = 0; j < K - 1; ++j) acc += cw.data[cc * K + j] * st.hist[j * W + ch];
      conv[ch] = silu(acc);
    }
    if (K > 1) {
      st.hist.erase(st.hist.begin(), st.hist.begin() + W);
      st.hist.insert(st.hist.end(), cur.begin(), cur.end());
    }
    const auto a = lin(w.a_proj, x, Hv), b = lin(w.b_proj, x, Hv), gate = lin(w.g_proj, x, Cv);
    std::vector<double> o(Cv, 0.0);
    for (int h = 0; h < Hv; ++h) {
      const int hk = h / (Hv / Hk);
      std::vector<double> q(dk), k(dk);
      double nq = 0, nk = 0;
      for (int i = 0; i < dk; ++i) q[i] = conv[hk * dk + i], k[i] = conv[Ck + hk * dk + i];
      for (int i = 0; i < dk; ++i) nq += q[i] * q[i], nk += k[i] * k[i];
      for (int i = 0; i < dk; ++i) q[i] /= std::sqrt(nq + 1e-6) * std::sqrt(double(dk)), k[i] /= std::sqrt(nk + 1e-6);
      const double g = -std::exp(double(w.A_log.data[h])) * std::log1p(std::exp(a[h] + w.dt_bias.data[h]));
      const double beta = 1 / (1 + std::exp(-b[h]));
      double* S = &st.S[static_cast<size_t>(h) * dk * dv];
      for (int i = 0; i < dk * dv; ++i) S[i] *= std::exp(g);
      for (int j = 0; j < dv; ++j) {
        double sk = 0;
        for (int i = 0; i < dk; ++i) sk += S[i * dv + j] * k[i];
        const double uj = beta * (conv[2 * Ck + h * dv + j] - sk);
        for (int i = 0; i < dk; ++i) S[i * dv + j] += k[i] * uj;
      }
      double ss = 0;
      for (int j = 0; j < dv; ++j) {
        for (int i = 0; i < dk; ++i) o[h * dv + j] += S[i * dv + j] * q[i];
        ss += o[h * dv + j] * o[h * dv + j];
      }
      const double inv = 1 / std::sqrt(ss / dv + c.norm_eps);
      for (int j = 0; j < dv; ++j) o[h * dv + j] *= inv * w.o_norm.data[j] * silu(gate[h * dv + j]);
    }
    for (int i = 0; i < kDim; ++i)
      for (int j = 0; j < Cv; ++j) out[l * kDim + i] += double(w.o_proj.data[i * Cv + j]) * o[j];
  }
  return out;
}

template <typename A, typename B>
double RelErr(const A& got, const B& want) {
  double num = 0, den = 1e-6;
  for (size_t i = 0; i < want.size(); ++i) num = std::max(num, std::abs(double(got[i]) - double(want[i])));
  for (size_t i = 0; i < want.size(); ++i) den = std::max(den, std::abs(double(want[i])));
  return num / den;
}

std::vector<float> RandInput(int L, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> u(static_cast<size_t>(L) * kDim);
  for (float& x : u) x = nd(rng);
  return u;
}

std::vector<float> StepAll(Mixer& m, const float* u, int L, LayerState& st) {
  std::vector<float> out(static_cast<size_t>(L) * kDim);
  for (int l = 0; l < L; ++l) m.Forward(u + l * kDim, 1, l, st, out.data() + l * kDim);
  return out;
}

class GdnForms : public ::testing::TestWithParam<Case> {};

TEST_P(GdnForms, StepMatchesScalarReference) {
  const auto cfg = MakeConfig(GetParam());
  GatedDeltaNetMixer m(cfg, kDim, MakeWeights(cfg, 1));
  ASSERT_TRUE(GatedDeltaNetMixer::Validate(cfg, kDim, m.weights()).ok());
  const int L = 40;
  auto u = RandInput(L, 2);
  auto st = m.NewState();
  RefState ref = RefFrom(static_cast<GatedDeltaNetState&>(*st), cfg);
  const auto got = StepAll(m, u.data(), L, *st);
  const auto want = RefGdn(cfg, m.weights(), u.data(), L, ref);
  EXPECT_LT(RelErr(got, want), 1e-5);
  EXPECT_LT(RelErr(static_cast<GatedDeltaNetState&>(*st).S.data, ref.S), 1e-5);
}

TEST_P(GdnForms, PrefillMatchesStepForEveryChunk) {
  auto cfg = MakeConfig(GetParam());
  const int L = 37;
  auto u = RandInput(L, 3);
  GatedDeltaNetMixer stepper(cfg, kDim, MakeWeights(cfg, 4));
  auto st_ref = stepper.NewState();
  const auto want = StepAll(stepper, u.data(), L, *st_ref);
  const auto& sref = static_cast<GatedDeltaNetState&>(*st_ref);
  for (int chunk : {1, 3, 8, 16, 64}) {
    cfg.chunk_size = chunk;
    GatedDeltaNetMixer m(cfg, kDim, MakeWeights(cfg, 4));
    auto st = m.NewState();
    std::vector<float> got(static_cast<size_t>(L) * kDim);
    m.Forward(u.data(), L, 0, *st, got.data());
    const auto& s = static_cast<GatedDeltaNetState&>(*st);
    EXPECT_LT(RelErr(got, want), 1e-5) << "chunk " << chunk;
    EXPECT_LT(RelErr(s.S.data, sref.S.data), 1e-5) << "chunk " << chunk;
    EXPECT_LT(RelErr(s.v_conv.data, sref.v_conv.data), 1e-6) << "chunk " << chunk;
    EXPECT_LT(RelErr(s.q_conv.data, sref.q_conv.data), 1e-6) << "chunk " << chunk;
  }
}

TEST_P(GdnForms, PrefillFromStateMatchesSteppingAndStepAfterPrefill) {
  auto cfg = MakeConfig(GetParam());
  cfg.chunk_size = 5;
  GatedDeltaNetMixer m(cfg, kDim, MakeWeights(cfg, 5));
  const int L0 = 11, L1 = 13, L2 = 4;
  auto u = RandInput(L0 + L1 + L2, 6);
  auto a = m.NewState();
  std::vector<float> tmp(static_cast<size_t>(L0) * kDim);
  m.Forward(u.data(), L0, 0, *a, tmp.data());
  auto b = a->Clone();
  std::vector<float> pre(static_cast<size_t>(L1) * kDim);
  m.Forward(u.data() + L0 * kDim, L1, L0, *a, pre.data());
  const auto step = StepAll(m, u.data() + L0 * kDim, L1, *b);
  EXPECT_LT(RelErr(pre, step), 1e-5);
  const auto s1 = StepAll(m, u.data() + (L0 + L1) * kDim, L2, *a);
  const auto s2 = StepAll(m, u.data() + (L0 + L1) * kDim, L2, *b);
  EXPECT_LT(RelErr(s1, s2), 1e-5);
  RefState ref = RefFrom(static_cast<GatedDeltaNetState&>(*m.NewState()), cfg);
  const auto want = RefGdn(cfg, m.weights(), u.data(), L0 + L1 + L2, ref);
  EXPECT_LT(RelErr(s1, std::vector<double>(want.end() - L2 * kDim, want.end())), 1e-5);
}

TEST_P(GdnForms, MaterializedMatrixReproducesOutput) {
  const auto cfg = MakeConfig(GetParam());
  GatedDeltaNetMixer m(cfg, kDim, MakeWeights(cfg, 7));
  const int L = 21, Hv = cfg.n_v_heads, dv = cfg.head_v_dim;
  auto u = RandInput(L, 8);
  Tensor M = m.Materialize(u.data(), L);
  ASSERT_EQ(M.shape, (std::vector<int64_t>{Hv, L, L}));
  GatedDeltaNetMixer::Tokens t;
  m.Prepare(u.data(), L, nullptr, &t);
  std::vector<float> o(static_cast<size_t>(L) * Hv * dv, 0.0f);  // o = M v per head
  for (int h = 0; h < Hv; ++h)
    for (int i = 0; i < L; ++i)
      for (int s = 0; s <= i; ++s)
        for (int j = 0; j < dv; ++j)
          o[(i * Hv + h) * dv + j] += M.data[(h * L + i) * L + s] * t.v[(s * Hv + h) * dv + j];
  std::vector<float> want(static_cast<size_t>(L) * kDim), got(want.size());
  m.NormGate(t, o.data());
  ops::Linear(Threads{1}, o.data(), L, ops::Weight::F32(m.weights().o_proj.ptr(), kDim, Hv * dv), want.data());
  auto st = m.NewState();
  m.Forward(u.data(), L, 0, *st, got.data());
  EXPECT_LT(RelErr(got, want), 1e-5);
  for (int h = 0; h < Hv; ++h)
    for (int i = 0; i < L; ++i)
      for (int s = i + 1; s < L; ++s) ASSERT_EQ(M.data[(h * L + i) * L + s], 0.0f);
}

TEST_P(GdnForms, StateBytesIndependentOfLength) {
  const auto cfg = MakeConfig(GetParam());
  GatedDeltaNetMixer m(cfg, kDim, MakeWeights(cfg, 9));
  auto u = RandInput(50, 10);
  auto st = m.NewState();
  const size_t b0 = st->Bytes();
  std::vector<float> out(50 * kDim);
  m.Forward(u.data(), 30, 0, *st, out.data());
  EXPECT_EQ(st->Bytes(), b0);
  m.Forward(u.data() + 30 * kDim, 1, 30, *st, out.data());
  EXPECT_EQ(st->Bytes(), b0);
  const size_t Ck = cfg.n_qk_heads * cfg.head_k_dim, Cv = cfg.n_v_heads * cfg.head_v_dim;
  EXPECT_EQ(b0, 4 * ((cfg.conv_kernel - 1) * (2 * Ck + Cv) + cfg.n_v_heads * cfg.head_k_dim * cfg.head_v_dim));
}

INSTANTIATE_TEST_SUITE_P(All, GdnForms, ::testing::Values(Case{2, 2}, Case{2, 4}, Case{1, 3}), Name);

TEST(GdnFactory, LoadsFlaNamesAndReportsBadShapes) {
  ModelConfig cfg;
  cfg.dim = kDim;
  cfg.gdn = MakeConfig(Case{2, 4});
  cfg.layers.assign(1, LayerConfig{MixerKind::kGatedDeltaNet, {}});
  const GatedDeltaNetWeights w = MakeWeights(cfg.gdn, 11);
  auto build = [&](const std::string& bad) {
    TensorStore store;
    auto add = [&](const std::string& name, const Tensor& t) {
      std::vector<int64_t> shape = t.shape;
      if (name == bad) shape.front() += 1;
      std::vector<uint8_t> bytes(Tensor::NumelOf(shape) * 4, 0);
      std::memcpy(bytes.data(), t.data.data(), std::min(bytes.size(), t.data.size() * 4));
      const uint8_t* p = store.Own(std::move(bytes));
      EXPECT_TRUE(
          store.Add({"model.layers.0.attn." + name, DType::kF32, shape, p, size_t(Tensor::NumelOf(shape) * 4), "mem"})
              .ok());
    };
    add("q_proj.weight", w.q_proj), add("k_proj.weight", w.k_proj), add("v_proj.weight", w.v_proj);
    add("a_proj.weight", w.a_proj), add("b_proj.weight", w.b_proj), add("A_log", w.A_log), add("dt_bias", w.dt_bias);
    add("q_conv1d.weight", w.q_conv), add("k_conv1d.weight", w.k_conv), add("v_conv1d.weight", w.v_conv);
    add("g_proj.weight", w.g_proj), add("o_norm.weight", w.o_norm), add("o_proj.weight", w.o_proj);
    return MakeMixer(cfg, 0, store, "model.layers.0.attn.");
  };
  auto ok = build("");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ((*ok)->num_heads(), 4);
  for (const char* bad : {"k_proj.weight", "A_log", "v_conv1d.weight", "o_norm.weight"}) {
    auto r = build(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status().message();
  }
  cfg.gdn.n_v_heads = 3;  // not a multiple of 2 q/k heads
  auto r = build("");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("n_v_heads"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace subq
