// Discrete Mamba-2 mixer (and its head-level hybrid): the three forms against each other and against the
// scalar reference; state handling; load errors.
#include "mixers/discrete_mamba2.h"

#include <gtest/gtest.h>

#include "mixers/mixer_test_util.h"
#include "mixers/mixers.h"
#include "mixers/ssd_reference.h"

namespace subq {
namespace {

using testing::RelErr;

constexpr double kTol = 1e-5;
const std::string kPrefix = "backbone.layers.0.mixer.";

ModelConfig TinyConfig(int chunk = 16, std::vector<int> kept = {}, bool conv_bias = true) {
  ModelConfig cfg;
  cfg.family = "llamba";
  cfg.dim = 32;
  cfg.n_layers = 1;
  cfg.layers = {LayerConfig{MixerKind::kDiscreteMamba2, std::move(kept)}};
  cfg.dm2.d_state = 8;
  cfg.dm2.n_qk_heads = 2;
  cfg.dm2.n_v_heads = 4;
  cfg.dm2.head_dim = 8;
  cfg.dm2.conv_kernel = 4;
  cfg.dm2.chunk_size = chunk;
  cfg.dm2.conv_bias = conv_bias;
  cfg.attn.n_heads = 4;
  cfg.attn.n_kv_heads = 4;
  cfg.attn.head_dim = 8;
  cfg.attn.rope_theta = 10000.0f;
  return cfg;
}

struct Fixture {
  ModelConfig cfg;
  TensorStore store;
  std::unique_ptr<DiscreteMamba2Mixer> mixer;
};

Fixture Build(ModelConfig cfg, unsigned seed = 1) {
  std::mt19937 rng(seed);
  Fixture f{cfg, testing::StoreFrom(testing::RandomDiscreteMamba2Tensors(cfg, 0, rng, kPrefix)), nullptr};
  auto m = DiscreteMamba2Mixer::Load(f.cfg, 0, f.store, kPrefix);
  EXPECT_TRUE(m.ok()) << m.status().message();
  if (m.ok()) f.mixer = std::move(m).value();
  return f;
}

std::vector<float> Input(int L, int dim, unsigned seed = 7) {
  std::mt19937 rng(seed);
  return testing::RandomTensor({L, dim}, rng, 1.0f).data;
}

std::vector<float> Prefill(Mixer& m, const std::vector<float>& u, int L, int dim) {
  auto st = m.NewState();
  std::vector<float> out(static_cast<size_t>(L) * dim);
  m.Forward(u.data(), L, 0, *st, out.data());
  return out;
}

std::vector<float> StepAll(Mixer& m, const float* u, int L, int dim, LayerState& st, int pos0 = 0) {
  std::vector<float> out(static_cast<size_t>(L) * dim);
  for (int t = 0; t < L; ++t) m.Forward(u + static_cast<size_t>(t) * dim, 1, pos0 + t, st, out.data() + t * dim);
  return out;
}

TEST(DiscreteMamba2, PrefillMatchesScalarReference) {
  for (bool conv_bias : {true, false}) {
    Fixture f = Build(TinyConfig(16, {}, conv_bias));
    const int L = 45, D = f.cfg.dim;
    auto u = Input(L, D);
    auto out = Prefill(*f.mixer, u, L, D);
    auto ref = reference::DiscreteMamba2Forward(f.cfg.dm2, f.mixer->weights(), D, u.data(), L);
    EXPECT_LT(RelErr(out, ref, out.size()), kTol) << "conv_bias " << conv_bias;
  }
}

TEST(DiscreteMamba2, StepEqualsChunkedPrefill) {
  const int L = 50;
  for (std::vector<int> kept : {std::vector<int>{}, std::vector<int>{2}}) {
    for (int chunk : {1, 3, 8, 16, 64}) {
      Fixture f = Build(TinyConfig(chunk, kept));
      const int D = f.cfg.dim;
      auto u = Input(L, D);
      auto pre = Prefill(*f.mixer, u, L, D);
      auto st = f.mixer->NewState();
      auto step = StepAll(*f.mixer, u.data(), L, D, *st);
      EXPECT_LT(RelErr(pre, step, pre.size()), kTol) << "chunk " << chunk << " kept heads " << kept.size();
    }
  }
}

// y = M v (D on the diagonal of the SSM heads, attention probabilities for kept heads), then the gate
// and out_proj, must reproduce the forward pass.
void CheckMaterialize(const ModelConfig& cfg) {
  Fixture f = Build(cfg);
  const DiscreteMamba2Config& c = f.cfg.dm2;
  const int L = 27, D = f.cfg.dim, H = c.n_v_heads, P = c.head_dim, E = c.d_inner();
  auto u = Input(L, D);
  Tensor M = f.mixer->Materialize(u.data(), L);  // [H, L, L]
  ASSERT_EQ(M.shape, (std::vector<int64_t>{H, L, L}));
  Tensor v, z;
  f.mixer->ProjectFresh(u.data(), L, &v, &z);
  std::vector<float> y(static_cast<size_t>(L) * E, 0.0f);
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < L; ++i)
      for (int j = 0; j < L; ++j) {
        const float m = M.data[(static_cast<size_t>(h) * L + i) * L + j];
        if (j > i) EXPECT_EQ(m, 0.0f);
        for (int p = 0; p < P; ++p) y[i * E + h * P + p] += m * v.data[j * E + h * P + p];
      }
  std::vector<float> via_m(static_cast<size_t>(L) * D);
  f.mixer->ApplyOutput(y.data(), z.ptr(), L, via_m.data());
  auto out = Prefill(*f.mixer, u, L, D);
  EXPECT_LT(RelErr(via_m, out, out.size()), kTol);
  for (int h : cfg.layers[0].attention_heads)  // attention rows are distributions
    for (int i = 0; i < L; ++i) {
      double s = 0.0;
      for (int j = 0; j < L; ++j) s += M.data[(static_cast<size_t>(h) * L + i) * L + j];
      EXPECT_NEAR(s, 1.0, 1e-5) << "head " << h << " row " << i;
    }
}

TEST(DiscreteMamba2, MaterializeTimesValuesEqualsForward) { CheckMaterialize(TinyConfig(8)); }
TEST(DiscreteMamba2, HeadHybridMaterializeTimesValuesEqualsForward) { CheckMaterialize(TinyConfig(8, {3, 0})); }

TEST(DiscreteMamba2, MaterializeDiagonalHoldsD) {
  Fixture f = Build(TinyConfig());
  const int L = 3, D = f.cfg.dim;
  auto u = Input(L, D);
  Tensor M = f.mixer->Materialize(u.data(), L);
  Tensor v, z;
  f.mixer->ProjectFresh(u.data(), L, &v, &z);
  // M[h,0,0] = C_0 . B_0 + D_h; check D by differencing two heads sharing B/C with different D.
  const float d0 = f.mixer->weights().D.data[0], d1 = f.mixer->weights().D.data[1];  // heads 0, 1 share qk head 0
  EXPECT_NEAR(M.data[0] - M.data[static_cast<size_t>(L) * L], d0 - d1, 1e-5);
}

TEST(DiscreteMamba2, PrefillFromNonZeroStateEqualsStepping) {
  for (std::vector<int> kept : {std::vector<int>{}, std::vector<int>{1, 2}}) {
    for (int chunk : {3, 8, 64}) {
      Fixture f = Build(TinyConfig(chunk, kept));
      const int L0 = 13, L = 31, D = f.cfg.dim;
      auto u = Input(L0 + L, D);
      auto st = f.mixer->NewState();
      std::vector<float> tmp(static_cast<size_t>(L0) * D);
      f.mixer->Forward(u.data(), L0, 0, *st, tmp.data());
      auto st2 = st->Clone();
      std::vector<float> pre(static_cast<size_t>(L) * D);
      f.mixer->Forward(u.data() + L0 * D, L, L0, *st, pre.data());
      auto step = StepAll(*f.mixer, u.data() + L0 * D, L, D, *st2, L0);
      EXPECT_LT(RelErr(pre, step, pre.size()), kTol) << "chunk " << chunk;
      auto& a = static_cast<SsmLayerState&>(*st);
      auto& b = static_cast<SsmLayerState&>(*st2);
      EXPECT_LT(RelErr(a.ssm.data, b.ssm.data, a.ssm.data.size()), kTol);
    }
  }
}

TEST(DiscreteMamba2, StepContinuesAfterPrefill) {
  for (std::vector<int> kept : {std::vector<int>{}, std::vector<int>{0}}) {
    Fixture f = Build(TinyConfig(8, kept));
    const int L0 = 21, L1 = 9, D = f.cfg.dim;
    auto u = Input(L0 + L1, D);
    auto whole = Prefill(*f.mixer, u, L0 + L1, D);
    auto st = f.mixer->NewState();
    std::vector<float> first(static_cast<size_t>(L0) * D);
    f.mixer->Forward(u.data(), L0, 0, *st, first.data());
    auto rest = StepAll(*f.mixer, u.data() + L0 * D, L1, D, *st, L0);
    EXPECT_LT(RelErr(first, whole, first.size()), kTol);
    EXPECT_LT(RelErr(rest.data(), whole.data() + L0 * D, rest.size()), kTol);
  }
}

TEST(DiscreteMamba2, StateBytes) {
  Fixture f = Build(TinyConfig());
  const int D = f.cfg.dim;
  const DiscreteMamba2Config& c = f.cfg.dm2;
  auto u = Input(300, D);
  std::vector<float> out(300 * D);
  auto s1 = f.mixer->NewState(), s2 = f.mixer->NewState();
  f.mixer->Forward(u.data(), 3, 0, *s1, out.data());
  f.mixer->Forward(u.data(), 300, 0, *s2, out.data());
  EXPECT_EQ(s1->Bytes(), s2->Bytes());
  const size_t conv_dim = c.d_inner() + 2 * c.n_qk_heads * c.d_state;
  EXPECT_EQ(s1->Bytes(), 4 * ((c.conv_kernel - 1) * conv_dim + size_t(c.n_v_heads) * c.head_dim * c.d_state));
  // A head-level hybrid layer's state grows (KV cache of the kept heads only).
  Fixture h = Build(TinyConfig(16, {1}));
  auto h1 = h.mixer->NewState(), h2 = h.mixer->NewState();
  h.mixer->Forward(u.data(), 3, 0, *h1, out.data());
  h.mixer->Forward(u.data(), 300, 0, *h2, out.data());
  EXPECT_GT(h2->Bytes(), h1->Bytes());
  EXPECT_GE(h2->Bytes() - s2->Bytes(), size_t{2} * 300 * c.head_dim * 4);  // k and v of one head
  EXPECT_LE(h2->Bytes() - s2->Bytes(), size_t{2} * 2 * 300 * c.head_dim * 4);  // (geometric growth)
}

TEST(DiscreteMamba2, LoadErrorsAreClear) {
  std::mt19937 rng(3);
  ModelConfig cfg = TinyConfig();
  auto tensors = testing::RandomDiscreteMamba2Tensors(cfg, 0, rng, kPrefix);
  auto expect_error = [&](const ModelConfig& c, const testing::NamedTensors& ts, const std::string& want) {
    TensorStore st = testing::StoreFrom(ts);
    auto m = MakeDiscreteMamba2(c, 0, st, kPrefix);
    ASSERT_FALSE(m.ok()) << want;
    EXPECT_NE(m.status().message().find(want), std::string::npos) << m.status().message();
  };
  ModelConfig bad = cfg;
  bad.dm2.d_state = 16;
  expect_error(bad, tensors, "d_state");
  bad = cfg;
  bad.dm2.n_qk_heads = 3;
  expect_error(bad, tensors, "n_qk_heads 3 does not divide n_v_heads 4");
  bad = cfg;
  bad.layers[0].attention_heads = {4};
  expect_error(bad, tensors, "kept attention head 4 outside 0..3");
  bad.layers[0].attention_heads = {1};
  expect_error(bad, tensors, "attn_q_proj.weight");  // kept heads without their weights
  bad = cfg;
  bad.dm2.conv_bias = false;
  expect_error(bad, tensors, "conv1d.bias' present");
}

}  // namespace
}  // namespace subq
