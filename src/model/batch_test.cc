// Batched ragged forward == one sequence at a time, for every family, with sequences at different
// positions that join and leave between steps; and no allocation in the decode loop.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "model/model_test_util.h"

// Shared with the other tests of this binary that check a decode loop allocates nothing (tests/oryx_test.cc).
namespace subq::testing {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace subq::testing
using subq::testing::g_allocations;
using subq::testing::g_counting;

// Counting global allocator (this test binary only): every operator new while g_counting is set.
void* operator new(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace subq {
namespace {

using testing::RandomModel;
using testing::RandomModelConfig;

// Relative to the largest logit magnitude of the reference.
double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, static_cast<double>(std::fabs(a[i] - b[i])));
    den = std::max(den, static_cast<double>(std::fabs(b[i])));
  }
  return num / den;
}

// Per sequence: a prompt, then decode tokens; it joins the batch at step `join` (its prompt prefilled
// in that step's ragged call, next to the others' decode tokens) and leaves after `steps` tokens.
struct Plan {
  std::vector<int> prompt;
  std::vector<int> decode;
  int join;
};

class Batched : public ::testing::TestWithParam<const char*> {};

TEST_P(Batched, RaggedBatchEqualsOneAtATime) {
  const ModelConfig cfg = RandomModelConfig(GetParam());
  auto mr = RandomModel(cfg, 5);
  ASSERT_TRUE(mr.ok()) << mr.status().message();
  const Model& m = **mr;
  const int V = cfg.vocab_size;
  std::mt19937 rng(9);
  auto toks = [&](int n) {
    std::vector<int> t(n);
    for (int& x : t) x = static_cast<int>(rng() % V);
    return t;
  };
  // Prompt lengths 1..13 (some longer than the chunk of 4), joins at steps 0..3, different lengths.
  std::vector<Plan> plans = {{toks(7), toks(6), 0}, {toks(1), toks(3), 0}, {toks(13), toks(5), 2},
                             {toks(4), toks(2), 1}, {toks(9), toks(4), 3}};
  // Reference: each sequence alone, logits after its prompt and after each decode token.
  Workspace ws1(m, 16, Threads{1});
  std::vector<std::vector<std::vector<float>>> want(plans.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    SequenceState s = m.NewSequence(64).value();
    std::vector<float> lg(V);
    ASSERT_TRUE(m.Forward(plans[i].prompt.data(), plans[i].prompt.size(), s, ws1, lg.data()).ok());
    want[i].push_back(lg);
    for (size_t d = 0; d + 1 < plans[i].decode.size(); ++d) {
      ASSERT_TRUE(m.Forward(&plans[i].decode[d], 1, s, ws1, lg.data()).ok());
      want[i].push_back(lg);
    }
  }
  // Batched: one ragged call per step with every live sequence.
  Workspace ws(m, 64, Threads{2});
  std::vector<SequenceState> states;
  for (size_t i = 0; i < plans.size(); ++i) states.push_back(m.NewSequence(64).value());
  std::vector<std::vector<std::vector<float>>> got(plans.size());
  std::vector<std::vector<float>> out(plans.size(), std::vector<float>(V));
  for (int step = 0; step < 12; ++step) {
    std::vector<SeqInput> batch;
    std::vector<size_t> who;
    for (size_t i = 0; i < plans.size(); ++i) {
      const int k = step - plans[i].join;  // 0: prompt; k >= 1: decode token k-1
      if (k < 0 || k >= static_cast<int>(plans[i].decode.size())) continue;
      const int* t = k == 0 ? plans[i].prompt.data() : &plans[i].decode[k - 1];
      const int n = k == 0 ? static_cast<int>(plans[i].prompt.size()) : 1;
      batch.push_back(SeqInput{t, n, &states[i], out[i].data(), false});
      who.push_back(i);
    }
    if (batch.empty()) continue;
    ASSERT_TRUE(m.Forward(batch, ws).ok());
    for (size_t i : who) got[i].push_back(out[i]);
  }
  for (size_t i = 0; i < plans.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size()) << i;
    for (size_t k = 0; k < want[i].size(); ++k)
      EXPECT_LT(MaxRelDiff(got[i][k], want[i][k]), 1e-5) << GetParam() << " seq " << i << " output " << k;
  }
}

TEST_P(Batched, DecodeLoopDoesNotAllocate) {
  const ModelConfig cfg = RandomModelConfig(GetParam());
  auto mr = RandomModel(cfg, 6);
  ASSERT_TRUE(mr.ok()) << mr.status().message();
  const Model& m = **mr;
  const int B = 4, V = cfg.vocab_size;
  Workspace ws(m, 32, Threads{2});
  std::vector<SequenceState> states;
  for (int i = 0; i < B; ++i) states.push_back(m.NewSequence(100).value());
  std::vector<int> tok(B, 3);
  std::vector<float> logits(static_cast<size_t>(B) * V);
  std::vector<SeqInput> batch(B);
  auto step = [&] {
    for (int i = 0; i < B; ++i) batch[i] = SeqInput{&tok[i], 1, &states[i], logits.data() + static_cast<size_t>(i) * V};
    ASSERT_TRUE(m.Forward(batch, ws).ok());
    for (int i = 0; i < B; ++i) tok[i] = (tok[i] * 31 + 7) % V;
  };
  for (int i = 0; i < 16; ++i) step();  // warm-up: per-thread buffers (Mamba-3/GDN tokens) reach their size
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < 64; ++i) step();
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, Batched, ::testing::ValuesIn(testing::kModelKinds),
                         [](const auto& info) { return std::string(info.param); });

TEST(Batched, BadBatchesAreClearErrors) {
  const ModelConfig cfg = RandomModelConfig("llama");
  auto mr = RandomModel(cfg, 7);
  ASSERT_TRUE(mr.ok());
  const Model& m = **mr;
  Workspace ws(m, 8, Threads{1});
  SequenceState a = m.NewSequence(16).value();
  std::vector<float> lg(static_cast<size_t>(cfg.vocab_size) * 16);
  std::vector<int> t(12, 1);
  SeqInput twice[2] = {{t.data(), 1, &a, lg.data()}, {t.data(), 1, &a, lg.data()}};
  EXPECT_NE(m.Forward(twice, ws).message().find("appears twice"), std::string::npos);
  SeqInput big{t.data(), 9, &a, lg.data()};
  EXPECT_NE(m.Forward(std::span<const SeqInput>(&big, 1), ws).message().find("exceed the workspace"), std::string::npos);
  SequenceState small = m.NewSequence(4).value();
  EXPECT_NE(m.Forward(t.data(), 5, small, ws, lg.data()).message().find("context"), std::string::npos);
  EXPECT_FALSE(m.NewSequence(cfg.max_seq_len + 1).ok());
  auto other = RandomModel(cfg, 8);
  SequenceState foreign = (*other)->NewSequence(16).value();
  SeqInput f{t.data(), 1, &foreign, lg.data()};
  EXPECT_NE(m.Forward(std::span<const SeqInput>(&f, 1), ws).message().find("another model"), std::string::npos);
}

}  // namespace
}  // namespace subq

namespace subq {
namespace {

// bf16 recurrent state: prefill + decode stays close to the f32-state model, and the state is half as big.
TEST(Bf16State, CloseToF32StateAndHalfTheBytes) {
  for (const char* kind : {"mamba2", "llamba"}) {
    ModelConfig cfg = testing::RandomModelConfig(kind);
    auto m32 = testing::RandomModel(cfg, 11);
    cfg.bf16_state = true;
    auto m16 = testing::RandomModel(cfg, 11);
    ASSERT_TRUE(m32.ok() && m16.ok());
    const int V = cfg.vocab_size;
    Workspace w32(**m32, 16, Threads{1}), w16(**m16, 16, Threads{1});
    SequenceState s32 = (*m32)->NewSequence().value(), s16 = (*m16)->NewSequence().value();
    std::vector<int> ids = {1, 5, 9, 33, 2, 70, 41, 8, 19, 3};
    std::vector<float> a(V), b(V);
    ASSERT_TRUE((*m32)->Forward(ids.data(), 7, s32, w32, a.data()).ok());
    ASSERT_TRUE((*m16)->Forward(ids.data(), 7, s16, w16, b.data()).ok());
    for (int t = 7; t < 10; ++t) {
      ASSERT_TRUE((*m32)->Forward(&ids[t], 1, s32, w32, a.data()).ok());
      ASSERT_TRUE((*m16)->Forward(&ids[t], 1, s16, w16, b.data()).ok());
    }
    double num = 0, den = 0;
    for (int v = 0; v < V; ++v) num = std::max(num, double(std::fabs(a[v] - b[v]))), den = std::max(den, double(std::fabs(a[v])));
    EXPECT_LT(num / den, 2e-2) << kind;  // bf16 keeps 8 mantissa bits of the state
    EXPECT_GT(num, 0.0) << kind << ": the bf16 state changed nothing (not in use?)";
    const size_t hpn = cfg.family == "mamba2" ? cfg.mamba2.n_heads * cfg.mamba2.head_dim * cfg.mamba2.state_size
                                              : cfg.dm2.n_v_heads * cfg.dm2.head_dim * cfg.dm2.d_state;
    EXPECT_EQ(s32.Bytes() - s16.Bytes(), cfg.n_layers * hpn * 2) << kind << ": the SSM state is half as big";
  }
}

}  // namespace
}  // namespace subq
