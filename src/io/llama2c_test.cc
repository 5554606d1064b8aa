// llama2.c .bin reader on the real checkpoints, and on corrupted copies of them.
#include <gtest/gtest.h>

#include "io/checkpoint.h"
#include "io/io_test_util.h"

namespace subq {
namespace {

using namespace subq::testing;

struct Expected {
  std::string rel;
  int dim, hidden, layers, heads, kv_heads, vocab, seq_len;
};

class Llama2cReal : public ::testing::TestWithParam<Expected> {};

TEST_P(Llama2cReal, ConfigAndTensors) {
  const Expected& e = GetParam();
  const std::string path = DataDir() + "/" + e.rel;
  auto r = ReadLlama2c(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Checkpoint& ck = *r;
  const ModelConfig& c = ck.config;
  EXPECT_EQ(ck.format, "llama2c");
  EXPECT_EQ(c.family, "llama");
  EXPECT_EQ(c.dim, e.dim);
  EXPECT_EQ(c.hidden_dim, e.hidden);
  EXPECT_EQ(c.n_layers, e.layers);
  EXPECT_EQ(c.attn.n_heads, e.heads);
  EXPECT_EQ(c.attn.n_kv_heads, e.kv_heads);
  EXPECT_EQ(c.attn.head_dim, e.dim / e.heads);
  EXPECT_EQ(c.vocab_size, e.vocab);
  EXPECT_EQ(c.max_seq_len, e.seq_len);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_TRUE(c.attn.rope_interleaved);
  EXPECT_FLOAT_EQ(c.attn.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  ASSERT_EQ(c.layers.size(), size_t(e.layers));
  for (const auto& l : c.layers) EXPECT_EQ(l.mixer, MixerKind::kAttention);
  EXPECT_FALSE(ck.tensors.Has("lm_head.weight"));
  EXPECT_EQ(ck.tensors.tensors().size(), size_t(1 + 9 * e.layers + 1));
  EXPECT_TRUE(ValidateLlamaTensors(c, ck.tensors, path).ok());

  // Pointers into the mapping, at the offsets the format defines.
  const uint8_t* base = ck.tensors.Find("model.embed_tokens.weight")->data;
  const int64_t D = e.dim, kv = int64_t{e.dim} / e.heads * e.kv_heads;
  const int64_t wq_off = (int64_t{e.vocab} * D + e.layers * D) * 4;
  EXPECT_EQ(ck.tensors.Find("model.layers.0.self_attn.q_proj.weight")->data, base + wq_off);
  EXPECT_EQ(ck.tensors.Find("model.layers.1.self_attn.q_proj.weight")->data, base + wq_off + D * D * 4);
  EXPECT_EQ(ck.tensors.Find("model.layers.0.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{kv, D}));
  EXPECT_EQ(ck.tensors.Find("model.layers.0.mlp.down_proj.weight")->shape, (std::vector<int64_t>{D, e.hidden}));

  // The first header-following float is the first embedding value, as the raw bytes say.
  auto bytes = ReadBytes(path);
  float first;
  std::memcpy(&first, bytes.data() + 28, 4);
  auto emb = ck.tensors.Load("model.embed_tokens.weight", {e.vocab, e.dim});
  ASSERT_TRUE(emb.ok());
  EXPECT_EQ(emb->data[0], first);
  // RMSNorm weights of a trained model are not all zero / not garbage.
  auto norm = ck.tensors.Load("model.norm.weight", {e.dim});
  ASSERT_TRUE(norm.ok());
  for (float v : norm->data) EXPECT_TRUE(std::isfinite(v) && std::fabs(v) < 100);
}

INSTANTIATE_TEST_SUITE_P(RealFiles, Llama2cReal,
                         ::testing::Values(Expected{"stories260K/stories260K.bin", 64, 172, 5, 8, 4, 512, 512},
                                           Expected{"llama2xs/model.bin", 64, 192, 5, 8, 4, 512, 256},
                                           Expected{"babyllama/model5000.bin", 128, 352, 5, 8, 4, 105, 256}));

class Llama2cCorrupt : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    orig_ = ReadBytes(Stories("stories260K.bin"));
    ASSERT_EQ(orig_.size(), 1056540u);
  }
  // Writes `b` to a temp file and expects ReadLlama2c (and ReadCheckpoint) to fail naming it.
  void ExpectBad(const std::vector<uint8_t>& b, const std::string& also = "") {
    const std::string p = Tmp("bad_model.bin");
    WriteBytes(p, b);
    ExpectErrorNaming(ReadLlama2c(p), p, also);
    ExpectErrorNaming(ReadCheckpoint(p), p, also);
  }
  std::vector<uint8_t> orig_;
};

TEST_F(Llama2cCorrupt, CopyReadsFine) {
  WriteBytes(Tmp("ok.bin"), orig_);
  EXPECT_TRUE(ReadCheckpoint(Tmp("ok.bin")).ok());
}

TEST_F(Llama2cCorrupt, Truncated) {
  for (size_t n : {size_t{0}, size_t{3}, size_t{27}, size_t{28}, size_t{1000}, orig_.size() / 2, orig_.size() - 4,
                   orig_.size() - 1}) {
    SCOPED_TRACE(n);
    ExpectBad(std::vector<uint8_t>(orig_.begin(), orig_.begin() + n));
  }
}

TEST_F(Llama2cCorrupt, SizeMismatchSaysExpectedAndFound) {
  auto b = orig_;
  b.resize(b.size() - 4);
  ExpectBad(b, "implies 1056540 bytes, but the file has 1056536 bytes");
  b = orig_;
  b.push_back(0);
  ExpectBad(b, "1056541");
}

TEST_F(Llama2cCorrupt, BadHeaderFields) {
  const std::vector<std::pair<int, int32_t>> edits = {
      {0, 0},        {0, -64},     {0, 1 << 28}, {1, 0}, {2, 0}, {2, 1000000000}, {3, 0}, {3, 7} /* 64 % 7 */,
      {4, 0},        {4, 3} /* 8 % 3 */, {4, 16},   {5, 0}, {5, INT32_MIN}, {6, 0}, {6, -1}, {5, -512} /* no wcls */,
      {3, 64} /* head size 1 is odd */};
  for (auto [field, value] : edits) {
    SCOPED_TRACE(fmt::format("header[{}] = {}", field, value));
    auto b = orig_;
    Poke<int32_t>(&b, 4 * field, value);
    ExpectBad(b);
  }
}

TEST_F(Llama2cCorrupt, ForeignFileIsRejected) {
  const std::string gguf = Stories("stories260K.gguf");
  ExpectErrorNaming(ReadLlama2c(gguf), gguf);
  const std::string st = Stories("hf/model.safetensors");
  ExpectErrorNaming(ReadLlama2c(st), st);
}

TEST_F(Llama2cCorrupt, MissingFileAndFolder) {
  ExpectErrorNaming(ReadLlama2c(Tmp("nope.bin")), "nope.bin", "cannot open");
  ExpectErrorNaming(ReadCheckpoint(Tmp("nope.bin")), "nope.bin");
  ExpectErrorNaming(ReadLlama2c(tmp_), tmp_);
}

TEST_F(Llama2cCorrupt, UnsharedClassifier) {
  // Negative vocab_size: a wcls block follows; write one (a copy of the embeddings).
  auto b = orig_;
  Poke<int32_t>(&b, 20, -512);
  b.insert(b.end(), orig_.begin() + 28, orig_.begin() + 28 + 512 * 64 * 4);
  const std::string p = Tmp("unshared.bin");
  WriteBytes(p, b);
  auto r = ReadLlama2c(p);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->config.tie_embeddings);
  EXPECT_EQ(r->config.vocab_size, 512);
  auto lm = r->tensors.Load("lm_head.weight", {512, 64});
  auto emb = r->tensors.Load("model.embed_tokens.weight", {512, 64});
  ASSERT_TRUE(lm.ok() && emb.ok());
  EXPECT_EQ(lm->data, emb->data);
}

}  // namespace
}  // namespace subq
