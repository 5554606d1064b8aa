// GGUF reader on the real stories260K.gguf (checked against the llama2.c .bin of the same weights),
// and on corrupted copies of it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "io/checkpoint.h"
#include "io/io_test_util.h"
#include "ops/weight.h"

namespace subq {
namespace {

using namespace subq::testing;

TEST(Gguf, RealStories260K) {
  const std::string path = Stories("stories260K.gguf");
  auto r = ReadGguf(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Checkpoint& ck = *r;
  const ModelConfig& c = ck.config;
  EXPECT_EQ(ck.format, "gguf");
  ExpectStories260KDims(c);
  EXPECT_EQ(c.max_seq_len, 2048);
  EXPECT_NEAR(c.norm_eps, 1e-5f, 1e-9);
  EXPECT_FLOAT_EQ(c.attn.rope_theta, 10000.0f);
  EXPECT_TRUE(c.attn.rope_interleaved);
  EXPECT_FALSE(c.tie_embeddings);  // the file carries output.weight
  EXPECT_EQ(c.layers.size(), 5u);
  EXPECT_EQ(ck.tensors.tensors().size(), 48u);

  const EmbeddedVocab& v = ck.vocab;
  EXPECT_EQ(v.model, "llama");
  ASSERT_EQ(v.tokens.size(), 512u);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.scores.size(), 512u);
  ASSERT_EQ(v.token_types.size(), 512u);
  EXPECT_EQ(v.token_types[0], 2);
  EXPECT_EQ(v.token_types[3], 6);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.unk_id, 0);

  bool saw_tokens = false, saw_arch = false;
  for (const auto& line : ck.metadata) {
    EXPECT_EQ(line.find('\n'), std::string::npos);
    EXPECT_LT(line.size(), 400u) << line;
    saw_tokens |= line.rfind("tokenizer.ggml.tokens = [512 x string: '<unk>', '<s>'", 0) == 0;
    saw_arch |= line == "general.architecture = 'llama'";
  }
  EXPECT_TRUE(saw_tokens && saw_arch);
}

TEST(Gguf, SameWeightsAsLlama2cBin) {
  auto g = ReadGguf(Stories("stories260K.gguf"));
  auto b = ReadLlama2c(Stories("stories260K.bin"));
  ASSERT_TRUE(g.ok() && b.ok());
  // Every tensor of the .bin, q/k included (GGUF keeps the interleaved layout), bit for bit.
  for (const TensorInfo& t : b->tensors.tensors()) {
    SCOPED_TRACE(t.name);
    const TensorInfo* u = g->tensors.Find(t.name);
    ASSERT_NE(u, nullptr);
    EXPECT_EQ(u->shape, t.shape);
    EXPECT_EQ(AsFloats(u), AsFloats(&t));
  }
  // The GGUF output.weight is the shared classifier written out.
  EXPECT_EQ(AsFloats(g->tensors.Find("lm_head.weight")), AsFloats(b->tensors.Find("model.embed_tokens.weight")));
}

class GgufCorrupt : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    orig_ = ReadBytes(Stories("stories260K.gguf"));
    ASSERT_EQ(orig_.size(), 1185376u);
  }
  void ExpectBad(const std::vector<uint8_t>& b, const std::string& also = "") {
    const std::string p = Tmp("bad.gguf");
    WriteBytes(p, b);
    ExpectErrorNaming(ReadGguf(p), p, also);
    ExpectErrorNaming(ReadCheckpoint(p), p, also);
  }
  // Offset just past the tensor name `name` in the tensor-info table (n_dims follows).
  size_t InfoOf(const std::string& name) {
    std::string key(8, '\0');
    const uint64_t n = name.size();
    std::memcpy(key.data(), &n, 8);
    return FindBytes(orig_, key + name) + 8 + name.size();
  }
  std::vector<uint8_t> orig_;
};

TEST_F(GgufCorrupt, CopyReadsFine) {
  WriteBytes(Tmp("ok.gguf"), orig_);
  EXPECT_TRUE(ReadCheckpoint(Tmp("ok.gguf")).ok());
}

TEST_F(GgufCorrupt, Truncated) {
  const size_t info = InfoOf("blk.2.attn_q.weight");
  for (size_t n : {size_t{0}, size_t{3}, size_t{4}, size_t{10}, size_t{23}, size_t{100}, size_t{5000}, info,
                   size_t{14100}, size_t{14160}, orig_.size() / 2, orig_.size() - 1}) {
    SCOPED_TRACE(n);
    ExpectBad(std::vector<uint8_t>(orig_.begin(), orig_.begin() + n));
  }
}

TEST_F(GgufCorrupt, BadMagicAndVersion) {
  auto b = orig_;
  b[0] = 'X';
  const std::string p = Tmp("bad.gguf");
  WriteBytes(p, b);
  ExpectErrorNaming(ReadGguf(p), p, "bad magic");
  b = orig_;
  Poke<uint32_t>(&b, 4, 7);
  ExpectBad(b, "version 7");
}

TEST_F(GgufCorrupt, HugeCounts) {
  for (size_t off : {size_t{8}, size_t{16}}) {  // tensor count, kv count
    auto b = orig_;
    Poke<uint64_t>(&b, off, uint64_t{1} << 62);
    ExpectBad(b);
  }
  // Array length of tokenizer.ggml.tokens (after key, u32 type 9, u32 elem type 8).
  const size_t tok = FindBytes(orig_, "tokenizer.ggml.tokens") + 21 + 8;
  for (uint64_t n : {uint64_t{1} << 40, ~uint64_t{0}, uint64_t{600}}) {
    auto b = orig_;
    Poke<uint64_t>(&b, tok, n);
    ExpectBad(b);
  }
  // Length of the first token string.
  auto b = orig_;
  Poke<uint64_t>(&b, tok + 8, ~uint64_t{0} - 3);
  ExpectBad(b);
  // Key length.
  b = orig_;
  Poke<uint64_t>(&b, 24, uint64_t{1} << 50);
  ExpectBad(b);
}

TEST_F(GgufCorrupt, BadValueTypes) {
  const size_t type_at = FindBytes(orig_, "tokenizer.ggml.tokens") + 21;
  auto b = orig_;
  Poke<uint32_t>(&b, type_at, 99);
  ExpectBad(b, "type 99");
  b = orig_;
  Poke<uint32_t>(&b, type_at + 4, 13);  // unknown element type
  ExpectBad(b);
  b = orig_;
  Poke<uint32_t>(&b, type_at + 4, 9);  // nested arrays built from string bytes: must not crash
  ExpectBad(b);
}

TEST_F(GgufCorrupt, WrongArchitecture) {
  auto b = orig_;
  const size_t at = FindBytes(orig_, "general.architecture") + 20 + 4 + 8;
  std::memcpy(b.data() + at, "mamba", 5);
  ExpectBad(b, "architecture 'mamba'");
}

// The same bytes read as another type: BF16 as they are, Q8_0 / Q4_0 (blocks of an f16 scale and 32 int8 /
// 16 nibble-pair bytes) repacked into the planar layout of ops/weight.h, each value where GGUF puts it.
TEST_F(GgufCorrupt, Bf16AndQuantizedBlocksReadInPlace) {
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  auto ref = ReadGguf(Stories("stories260K.gguf"));
  ASSERT_TRUE(ref.ok());
  const uint8_t* first = ref->tensors.Find(name)->data;
  const size_t at = std::search(orig_.begin(), orig_.end(), first, first + 64) - orig_.begin();  // attn_q's data
  ASSERT_LT(at, orig_.size());
  const size_t q = InfoOf("blk.0.attn_q.weight");
  const std::map<uint32_t, std::string> types = {{30, "bf16"}, {8, "q8"}, {2, "q4"}};
  for (const auto& [type, wname] : types) {
    SCOPED_TRACE(wname);
    auto b = orig_;
    Poke<uint32_t>(&b, q + 20, type);
    WriteBytes(Tmp("t.gguf"), b);
    auto ck = ReadGguf(Tmp("t.gguf"));
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    auto w = ck->tensors.LoadWeight(name, 64, 64);
    ASSERT_TRUE(w.ok()) << w.status().message();
    EXPECT_EQ(ops::WeightTypeName(w->type), wname);
    auto u16 = [&](size_t off) { uint16_t h; std::memcpy(&h, &b[off], 2); return h; };
    std::vector<float> row(64);
    for (int r : {0, 17, 63}) {
      w->DequantizeRow(r, row.data());
      for (int c = 0; c < 64; ++c) {
        float want;
        if (type == 30) {
          want = BF16ToFloat(u16(at + 2 * (r * 64 + c)));
        } else {
          const size_t blk = at + (r * 2 + c / 32) * (type == 8 ? 34 : 18);
          const float d = HalfToFloat(u16(blk));
          const int j = c % 32;
          want = type == 8 ? d * static_cast<int8_t>(b[blk + 2 + j])
                           : d * ((j < 16 ? b[blk + 2 + j] & 15 : b[blk + 2 + j - 16] >> 4) - 8);
        }
        ASSERT_TRUE(std::memcmp(&row[c], &want, 4) == 0 || (std::isnan(row[c]) && std::isnan(want)))
            << r << "," << c << ": " << row[c] << " vs " << want;
      }
    }
  }
}

TEST_F(GgufCorrupt, TensorInfoEdits) {
  const size_t q = InfoOf("blk.0.attn_q.weight");  // n_dims u32, 2 x u64 dims, type u32, offset u64
  auto b = orig_;
  Poke<uint32_t>(&b, q, 5);
  ExpectBad(b, "blk.0.attn_q.weight");
  b = orig_;
  Poke<uint32_t>(&b, q, 0);
  ExpectBad(b, "blk.0.attn_q.weight");
  b = orig_;
  Poke<uint32_t>(&b, q + 20, 12);  // Q4_K: a type subq does not read
  ExpectBad(b, "blk.0.attn_q.weight' has GGML type Q4_K (12); subq reads F32, F16, BF16, Q8_0 and Q4_0");
  b = orig_;
  Poke<uint32_t>(&b, q + 20, 1234);
  ExpectBad(b, "has GGML type unknown (1234)");
  b = orig_;
  Poke<uint32_t>(&b, InfoOf("blk.0.ffn_down.weight") + 20, 8);  // Q8_0 with rows of 172: not whole blocks
  ExpectBad(b, "'blk.0.ffn_down.weight' is Q8_0 (8) with shape [64, 172]; subq reads Q8_0 (8) matrices whose rows");
  b = orig_;
  Poke<uint32_t>(&b, InfoOf("blk.0.attn_norm.weight") + 12, 2);  // a 1-D Q4_0 tensor
  ExpectBad(b, "'blk.0.attn_norm.weight' is Q4_0 (2) with shape [64]");
  b = orig_;
  Poke<uint64_t>(&b, q + 24, uint64_t{1} << 40);  // offset past EOF
  ExpectBad(b, "past the end");
  b = orig_;
  Poke<uint64_t>(&b, q + 24, 262400 + 64 * 4);  // overlaps (still aligned, inside the file)
  ExpectBad(b, "overlap");
  b = orig_;
  Poke<uint64_t>(&b, q + 24, 262400 + 4);  // unaligned
  ExpectBad(b, "alignment");
  b = orig_;
  Poke<uint64_t>(&b, q + 4, 65);  // wrong shape: [64, 65] runs into the next tensor
  ExpectBad(b);
  b = orig_;
  Poke<uint64_t>(&b, q + 4, 32);  // wrong shape that fits: caught by the Llama shape check
  ExpectBad(b, "q_proj.weight' has shape [64, 32], expected [64, 64]");
  b = orig_;
  Poke<uint64_t>(&b, q + 4, ~uint64_t{0});
  Poke<uint64_t>(&b, q + 12, ~uint64_t{0});
  ExpectBad(b, "implausible");
  // Rename a layer tensor: unknown name, then a missing tensor.
  b = orig_;
  const size_t name = q - std::string("blk.0.attn_q.weight").size();
  std::memcpy(b.data() + name, "blk.0.attn_x", 12);
  ExpectBad(b, "blk.0.attn_x.weight");
  b = orig_;
  std::memcpy(b.data() + name, "blk.7", 5);
  ExpectBad(b, "missing tensor 'model.layers.0.self_attn.q_proj.weight'");
}

TEST_F(GgufCorrupt, BadMetadataValues) {
  const size_t heads = FindBytes(orig_, "llama.attention.head_count") + 26;  // type u32 then value
  auto b = orig_;
  Poke<uint32_t>(&b, heads + 4, 7);
  ExpectBad(b, "head_count");
  b = orig_;
  Poke<uint32_t>(&b, heads + 4, 0);
  ExpectBad(b, "head_count");
  const size_t blocks = FindBytes(orig_, "llama.block_count") + 17;
  b = orig_;
  Poke<uint32_t>(&b, blocks + 4, 6);
  ExpectBad(b, "model.layers.5");
  b = orig_;
  Poke<uint32_t>(&b, blocks + 4, 4000000000u);
  ExpectBad(b, "block_count");
}

}  // namespace
}  // namespace subq
