// Head ablation (Workspace::SetZeroedHeads) on the real stories260K model, against an independently built
// model whose o_proj weights are zeroed where the masked heads' outputs enter it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "../../tests/test_util.h"

namespace subq {
namespace {

Checkpoint Stories() {
  auto ck = ReadCheckpoint(testing::DataDir() + "/stories260K/stories260K.bin");
  EXPECT_TRUE(ck.ok()) << ck.status().message();
  return ck.ok() ? std::move(*ck) : Checkpoint{};
}

// `ck` with columns [c0, c1) of layer `layer`'s o_proj [dim, n_heads*hd] set to zero (its other tensors
// are views into ck's file: ck must outlive the copy).
Checkpoint WithOprojColumnsZeroed(const Checkpoint& ck, int layer, int c0, int c1) {
  Checkpoint out = ck;
  out.tensors = TensorStore();
  out.tensors.source = ck.tensors.source;
  const std::string name = "model.layers." + std::to_string(layer) + ".self_attn.o_proj.weight";
  for (TensorInfo t : ck.tensors.tensors()) {
    if (t.name == name) {
      EXPECT_EQ(t.dtype, DType::kF32);
      std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
      float* w = reinterpret_cast<float*>(bytes.data());
      const int64_t rows = t.shape[0], cols = t.shape[1];
      for (int64_t r = 0; r < rows; ++r)
        for (int c = c0; c < c1; ++c) w[r * cols + c] = 0.0f;
      t.data = out.tensors.Own(std::move(bytes));
    }
    EXPECT_TRUE(out.tensors.Add(t).ok());
  }
  return out;
}

// All logits [L, V] of `tokens` from a fresh sequence, fed as two ragged sequences in one call (the
// second a copy, to run the mask through the batched path), with the mask of `zero` applied.
std::vector<float> Logits(const Model& m, const std::vector<int>& tokens, int layer, const std::vector<uint8_t>& zero) {
  const int L = static_cast<int>(tokens.size()), V = m.config().vocab_size;
  Workspace ws(m, 2 * L);
  if (!zero.empty()) EXPECT_TRUE(ws.SetZeroedHeads(layer, zero).ok());
  SequenceState a = m.NewSequence(L).value(), b = m.NewSequence(L).value();
  std::vector<float> la(static_cast<size_t>(L) * V), lb(la.size());
  const SeqInput in[2] = {{tokens.data(), L, &a, la.data(), true}, {tokens.data(), L, &b, lb.data(), true}};
  EXPECT_TRUE(m.Forward(std::span<const SeqInput>(in, 2), ws).ok());
  EXPECT_EQ(la, lb);
  return la;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0.0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
  return d;
}

const std::vector<int> kTokens = {1, 403, 407, 261, 378, 429, 20, 30, 280, 45, 470, 310, 267, 32, 411, 300};

TEST(HeadMask, AllHeadsOfALayerEqualTheLayerWithItsAttentionOutputZeroed) {
  const Checkpoint ck = Stories();
  auto model = Model::FromCheckpoint(ck).value();
  const int H = ck.config.attn.n_heads, hd = ck.config.attn.head_dim;
  const std::vector<float> base = Logits(*model, kTokens, 0, {});
  for (int layer : {0, 2, 4}) {
    const Checkpoint zeroed = WithOprojColumnsZeroed(ck, layer, 0, H * hd);
    auto reference = Model::FromCheckpoint(zeroed).value();
    const std::vector<float> want = Logits(*reference, kTokens, 0, {});
    const std::vector<float> got = Logits(*model, kTokens, layer, std::vector<uint8_t>(H, 1));
    EXPECT_LE(MaxAbsDiff(got, want), 1e-5) << "layer " << layer;
    EXPECT_GT(MaxAbsDiff(got, base), 1e-3) << "zeroing layer " << layer << " changed nothing";
  }
}

TEST(HeadMask, OneHeadEqualsZeroingItsColumnsOfOproj) {
  const Checkpoint ck = Stories();
  auto model = Model::FromCheckpoint(ck).value();
  const int H = ck.config.attn.n_heads, hd = ck.config.attn.head_dim;
  for (auto [layer, head] : {std::pair{1, 0}, std::pair{3, 5}}) {
    auto reference = Model::FromCheckpoint(WithOprojColumnsZeroed(ck, layer, head * hd, (head + 1) * hd)).value();
    std::vector<uint8_t> zero(H, 0);
    zero[head] = 1;
    EXPECT_LE(MaxAbsDiff(Logits(*model, kTokens, layer, zero), Logits(*reference, kTokens, 0, {})), 1e-5)
        << "layer " << layer << " head " << head;
  }
}

TEST(HeadMask, ClearingRestoresTheModelAndBadMasksAreErrors) {
  const Checkpoint ck = Stories();
  auto model = Model::FromCheckpoint(ck).value();
  const int H = ck.config.attn.n_heads, L = static_cast<int>(kTokens.size()), V = ck.config.vocab_size;
  Workspace ws(*model, L);
  auto run = [&] {
    SequenceState s = model->NewSequence(L).value();
    std::vector<float> out(static_cast<size_t>(L) * V);
    EXPECT_TRUE(model->Forward(kTokens.data(), L, s, ws, out.data(), true).ok());
    return out;
  };
  const std::vector<float> base = run();
  ASSERT_TRUE(ws.SetZeroedHeads(2, std::vector<uint8_t>(H, 1)).ok());
  EXPECT_NE(run(), base);
  ws.ClearZeroedHeads();
  EXPECT_EQ(run(), base);
  ASSERT_TRUE(ws.SetZeroedHeads(2, std::vector<uint8_t>(H, 0)).ok());  // no flag set: no mask
  EXPECT_EQ(ws.ZeroedHeads(2), nullptr);

  EXPECT_NE(ws.SetZeroedHeads(5, std::vector<uint8_t>(H, 1)).message().find("out of range"), std::string::npos);
  EXPECT_NE(ws.SetZeroedHeads(1, std::vector<uint8_t>(H + 1, 1)).message().find("has 8 heads"), std::string::npos);
  auto llamba = testing::RandomModel(testing::RandomModelConfig("llamba"), 3).value();
  Workspace ws2(*llamba, 4);
  EXPECT_NE(ws2.SetZeroedHeads(0, {1, 0, 0, 0}).message().find("attention layers only"), std::string::npos);
}

}  // namespace
}  // namespace subq
