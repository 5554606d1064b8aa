// Attention's three forms agree: prefill == step-by-step == materialized probabilities applied to V.
#include "mixers/attention.h"

#include <gtest/gtest.h>

#include <random>

#include "io/random_tensors.h"
#include "mixers/mixers.h"
#include "ops/ops.h"

namespace subq {
namespace {

struct Fixture {
  ModelConfig cfg;
  TensorStore store;
  std::unique_ptr<Mixer> mixer;
  Fixture(bool interleaved) {
    cfg.dim = 32;
    cfg.attn = {4, 2, 8, 10000.0f, interleaved, {}};
    cfg.layers.assign(1, LayerConfig{});
    std::mt19937 rng(1);
    EXPECT_TRUE(AddRandomTensor(store, "q_proj.weight", {32, 32}, 0.3f, rng).ok());
    EXPECT_TRUE(AddRandomTensor(store, "k_proj.weight", {16, 32}, 0.3f, rng).ok());
    EXPECT_TRUE(AddRandomTensor(store, "v_proj.weight", {16, 32}, 0.3f, rng).ok());
    EXPECT_TRUE(AddRandomTensor(store, "o_proj.weight", {32, 32}, 0.3f, rng).ok());
    auto m = MakeAttention(cfg, 0, store, "");
    EXPECT_TRUE(m.ok()) << m.status().message();
    mixer = std::move(*m);
  }
};

std::vector<float> RandomInput(int L, int D, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n;
  std::vector<float> u(static_cast<size_t>(L) * D);
  for (auto& v : u) v = n(rng);
  return u;
}

TEST(Attention, PrefillStepAndMaterializeAgree) {
  for (bool interleaved : {false, true}) {
    Fixture f(interleaved);
    const int L = 13, D = 32;
    auto u = RandomInput(L, D, 2);
    std::vector<float> y_prefill(L * D), y_step(L * D);
    auto s1 = f.mixer->NewState();
    f.mixer->Forward(u.data(), L, 0, *s1, y_prefill.data());
    // step, and a split prefill (5 then 8) continuing from the cache
    auto s2 = f.mixer->NewState();
    for (int t = 0; t < L; ++t) f.mixer->Forward(u.data() + t * D, 1, t, *s2, y_step.data() + t * D);
    for (int i = 0; i < L * D; ++i) ASSERT_NEAR(y_prefill[i], y_step[i], 1e-5f * (1 + std::abs(y_step[i])));
    std::vector<float> y_split(L * D);
    auto s3 = f.mixer->NewState();
    f.mixer->Forward(u.data(), 5, 0, *s3, y_split.data());
    f.mixer->Forward(u.data() + 5 * D, L - 5, 5, *s3, y_split.data() + 5 * D);
    for (int i = 0; i < L * D; ++i) ASSERT_NEAR(y_prefill[i], y_split[i], 1e-5f * (1 + std::abs(y_step[i])));

    // Materialized: y = o_proj(concat_h(A_h V_h)), V from v_proj with GQA.
    Tensor A = f.mixer->Materialize(u.data(), L);  // [H, L, L]
    ASSERT_EQ(A.shape, (std::vector<int64_t>{4, L, L}));
    auto v = f.store.LoadAny("v_proj.weight").value(), o = f.store.LoadAny("o_proj.weight").value();
    std::vector<float> V(L * 16), att(L * 32, 0.0f), y(L * D);
    ops::Linear(Threads{1}, u.data(), L, ops::Weight::F32(v.ptr(), 16, D), V.data());
    for (int h = 0; h < 4; ++h) {
      for (int i = 0; i < L; ++i) {
        float rowsum = 0.0f;
        for (int j = 0; j < L; ++j) {
          const float a = A.data[(h * L + i) * L + j];
          if (j > i) ASSERT_EQ(a, 0.0f);
          rowsum += a;
          for (int d = 0; d < 8; ++d) att[i * 32 + h * 8 + d] += a * V[j * 16 + (h / 2) * 8 + d];
        }
        ASSERT_NEAR(rowsum, 1.0f, 1e-5f);
      }
    }
    ops::Linear(Threads{1}, att.data(), L, ops::Weight::F32(o.ptr(), D, 32), y.data());
    for (int i = 0; i < L * D; ++i) ASSERT_NEAR(y[i], y_prefill[i], 1e-5f * (1 + std::abs(y[i])));
  }
}

TEST(Attention, KvCacheGrowsWithTokens) {
  Fixture f(false);
  auto u = RandomInput(40, 32, 3);
  std::vector<float> y(40 * 32);
  auto s = f.mixer->NewState();
  f.mixer->Forward(u.data(), 10, 0, *s, y.data());
  const size_t b10 = s->Bytes();
  f.mixer->Forward(u.data(), 30, 10, *s, y.data());
  EXPECT_GT(s->Bytes(), b10);
}

TEST(Attention, RejectsBadShapes) {
  ModelConfig cfg;
  cfg.dim = 32;
  cfg.attn = {4, 3, 8, 10000.0f, false, {}};
  cfg.layers.assign(1, LayerConfig{});
  TensorStore st;
  auto m = MakeAttention(cfg, 0, st, "x.");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("kv heads"), std::string::npos);
  cfg.attn.n_kv_heads = 2;
  std::mt19937 rng(1);
  ASSERT_TRUE(AddRandomTensor(st, "x.q_proj.weight", {32, 31}, 0.1f, rng).ok());
  m = MakeAttention(cfg, 0, st, "x.");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("x.q_proj.weight"), std::string::npos);
  EXPECT_NE(m.status().message().find("[32, 32]"), std::string::npos);
}

}  // namespace
}  // namespace subq
