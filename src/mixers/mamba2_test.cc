// Mamba-2 mixer: the three forms (step, chunked prefill, mixing matrix) against each other and against
// the scalar reference; state handling; load errors.
#include "mixers/mamba2.h"

#include <gtest/gtest.h>

#include "mixers/mixer_test_util.h"
#include "mixers/mixers.h"
#include "mixers/ssd_reference.h"

namespace subq {
namespace {

using testing::RelErr;

constexpr double kTol = 1e-5;
const std::string kPrefix = "backbone.layers.0.mixer.";

ModelConfig TinyConfig(int groups = 2, int chunk = 16, bool grouped = true) {
  ModelConfig cfg;
  cfg.family = "mamba2";
  cfg.dim = 24;
  cfg.n_layers = 1;
  cfg.layers = {LayerConfig{MixerKind::kMamba2, {}}};
  cfg.mamba2.n_heads = 4;
  cfg.mamba2.head_dim = 8;
  cfg.mamba2.state_size = 12;
  cfg.mamba2.n_groups = groups;
  cfg.mamba2.conv_kernel = 4;
  cfg.mamba2.chunk_size = chunk;
  cfg.mamba2.norm_grouped = grouped;
  return cfg;
}

struct Fixture {
  ModelConfig cfg;
  TensorStore store;
  std::unique_ptr<Mamba2Mixer> mixer;
};

Fixture Build(ModelConfig cfg, unsigned seed = 1) {
  std::mt19937 rng(seed);
  Fixture f{cfg, testing::StoreFrom(testing::RandomMamba2Tensors(cfg, rng, kPrefix)), nullptr};
  auto m = Mamba2Mixer::Load(f.cfg, 0, f.store, kPrefix);
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

TEST(Mamba2, PrefillMatchesScalarReference) {
  for (int groups : {1, 2}) {
    for (bool grouped : {true, false}) {
      Fixture f = Build(TinyConfig(groups, 16, grouped));
      const int L = 37, D = f.cfg.dim;
      auto u = Input(L, D);
      auto out = Prefill(*f.mixer, u, L, D);
      auto ref = reference::Mamba2Forward(f.cfg.mamba2, f.mixer->weights(), D, u.data(), L);
      EXPECT_LT(RelErr(out, ref, out.size()), kTol) << "groups " << groups << " grouped norm " << grouped;
    }
  }
}

TEST(Mamba2, GroupedNormMatters) {
  // With two groups, grouped and ungrouped gated norms must differ (else the flag is dead).
  Fixture a = Build(TinyConfig(2, 16, true)), b = Build(TinyConfig(2, 16, false));
  const int L = 5, D = a.cfg.dim;
  auto u = Input(L, D);
  auto oa = Prefill(*a.mixer, u, L, D), ob = Prefill(*b.mixer, u, L, D);
  EXPECT_GT(RelErr(oa, ob, oa.size()), 1e-3);
}

TEST(Mamba2, StepEqualsChunkedPrefill) {
  const int L = 50;
  for (int chunk : {1, 3, 8, 16, 64}) {
    Fixture f = Build(TinyConfig(2, chunk));
    const int D = f.cfg.dim;
    auto u = Input(L, D);
    auto pre = Prefill(*f.mixer, u, L, D);
    auto st = f.mixer->NewState();
    auto step = StepAll(*f.mixer, u.data(), L, D, *st);
    EXPECT_LT(RelErr(pre, step, pre.size()), kTol) << "chunk " << chunk;
  }
}

TEST(Mamba2, MaterializeTimesXEqualsForward) {
  Fixture f = Build(TinyConfig(2, 8));
  const Mamba2Config& c = f.cfg.mamba2;
  const int L = 29, D = f.cfg.dim, H = c.n_heads, P = c.head_dim, E = c.d_inner();
  auto u = Input(L, D);
  Tensor M = f.mixer->Materialize(u.data(), L);  // [H, L, L]
  ASSERT_EQ(M.shape, (std::vector<int64_t>{H, L, L}));
  Tensor x, z;
  f.mixer->ProjectFresh(u.data(), L, &x, &z);
  std::vector<float> y(static_cast<size_t>(L) * E, 0.0f);
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < L; ++i) {
      for (int j = 0; j < L; ++j) {
        const float m = M.data[(static_cast<size_t>(h) * L + i) * L + j];
        if (j > i) EXPECT_EQ(m, 0.0f);
        for (int p = 0; p < P; ++p) y[i * E + h * P + p] += m * x.data[j * E + h * P + p];
      }
    }
  std::vector<float> via_m(static_cast<size_t>(L) * D);
  f.mixer->ApplyOutput(y.data(), z.ptr(), L, via_m.data());
  auto out = Prefill(*f.mixer, u, L, D);
  EXPECT_LT(RelErr(via_m, out, out.size()), kTol);
}

TEST(Mamba2, PrefillFromNonZeroStateEqualsStepping) {
  for (int chunk : {3, 8, 64}) {
    Fixture f = Build(TinyConfig(1, chunk));
    const int L0 = 13, L = 31, D = f.cfg.dim;
    auto u = Input(L0 + L, D);
    auto st = f.mixer->NewState();
    std::vector<float> tmp(static_cast<size_t>(L0) * D);
    f.mixer->Forward(u.data(), L0, 0, *st, tmp.data());  // non-zero conv + ssm state
    auto st2 = st->Clone();
    std::vector<float> pre(static_cast<size_t>(L) * D);
    f.mixer->Forward(u.data() + L0 * D, L, L0, *st, pre.data());
    auto step = StepAll(*f.mixer, u.data() + L0 * D, L, D, *st2, L0);
    EXPECT_LT(RelErr(pre, step, pre.size()), kTol) << "chunk " << chunk;
    // Final states agree too.
    auto& a = static_cast<SsmLayerState&>(*st);
    auto& b = static_cast<SsmLayerState&>(*st2);
    EXPECT_LT(RelErr(a.ssm.data, b.ssm.data, a.ssm.data.size()), kTol);
    EXPECT_LT(RelErr(a.conv.data, b.conv.data, a.conv.data.size()), kTol);  // GEMM vs GEMV rounding
  }
}

TEST(Mamba2, StepContinuesAfterPrefill) {
  Fixture f = Build(TinyConfig(2, 8));
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

TEST(Mamba2, StateBytesIndependentOfLength) {
  Fixture f = Build(TinyConfig());
  const int D = f.cfg.dim;
  const Mamba2Config& c = f.cfg.mamba2;
  auto u = Input(100, D);
  auto s1 = f.mixer->NewState(), s2 = f.mixer->NewState();
  std::vector<float> out(100 * D);
  f.mixer->Forward(u.data(), 3, 0, *s1, out.data());
  f.mixer->Forward(u.data(), 100, 0, *s2, out.data());
  EXPECT_EQ(s1->Bytes(), s2->Bytes());
  const size_t conv_dim = c.d_inner() + 2 * c.n_groups * c.state_size;
  EXPECT_EQ(s1->Bytes(), 4 * ((c.conv_kernel - 1) * conv_dim + size_t(c.n_heads) * c.head_dim * c.state_size));
  // Clone is a deep copy: advancing the clone leaves the original alone.
  auto clone = s2->Clone();
  f.mixer->Forward(u.data(), 1, 100, *clone, out.data());
  EXPECT_NE(static_cast<SsmLayerState&>(*clone).ssm.data, static_cast<SsmLayerState&>(*s2).ssm.data);
}

TEST(Mamba2, LoadErrorsAreClear) {
  std::mt19937 rng(3);
  ModelConfig cfg = TinyConfig(2);
  auto tensors = testing::RandomMamba2Tensors(cfg, rng, kPrefix);
  {  // config says a different state size than the tensors
    ModelConfig bad = cfg;
    bad.mamba2.state_size = 16;
    TensorStore st = testing::StoreFrom(tensors);
    auto m = MakeMamba2(bad, 0, st, kPrefix);
    ASSERT_FALSE(m.ok());
    EXPECT_NE(m.status().message().find("in_proj.weight"), std::string::npos) << m.status().message();
    EXPECT_NE(m.status().message().find("state_size"), std::string::npos) << m.status().message();
  }
  {  // groups not dividing heads
    ModelConfig bad = cfg;
    bad.mamba2.n_groups = 3;
    TensorStore st = testing::StoreFrom(tensors);
    auto m = MakeMamba2(bad, 0, st, kPrefix);
    ASSERT_FALSE(m.ok());
    EXPECT_NE(m.status().message().find("n_groups 3 does not divide"), std::string::npos) << m.status().message();
  }
  {  // missing tensor
    auto fewer = tensors;
    fewer.erase(fewer.begin() + 4);  // A_log
    TensorStore st = testing::StoreFrom(fewer);
    auto m = MakeMamba2(cfg, 0, st, kPrefix);
    ASSERT_FALSE(m.ok());
    EXPECT_NE(m.status().message().find("A_log"), std::string::npos) << m.status().message();
  }
  {  // no conv bias is fine (use_conv_bias = false)
    auto nobias = tensors;
    nobias.erase(nobias.begin() + 2);
    TensorStore st = testing::StoreFrom(nobias);
    EXPECT_TRUE(MakeMamba2(cfg, 0, st, kPrefix).ok());
  }
}

}  // namespace
}  // namespace subq
