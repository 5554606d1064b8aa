// Quantization rules, `subq quantize`'s library function on the real stories260K (HF folder, llama2.c
// .bin and GGUF copies of the same weights), and malformed quantized folders.
#include "io/quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "io/io_test_util.h"
#include "io/quantized.h"
#include "io/safetensors_write.h"
#include "ops/weight.h"

namespace subq {
namespace {

using namespace subq::testing;

// The largest error one block of `x` may have after quantization: q8 rounds to d/2, q4 clamps the far
// end to d; the f16 rounding of d adds |q| * d * 2^-11 (|q| <= 127 resp. 8).
float BlockBound(const float* x, bool q8) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  return q8 ? amax / 127 * (0.5f + 127.0f / 2048) + 1e-7f : amax / 8 * (1.0f + 8.0f / 2048) + 1e-7f;
}

std::vector<float> Dequantized(const ops::Weight& w, int64_t r) {
  std::vector<float> out(w.cols);
  w.DequantizeRow(r, out.data());
  return out;
}

TEST(QuantizeRows, WithinTheBoundOfEachBlock) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 0.05f);
  const int64_t cols = 128;
  std::vector<float> x(cols);
  for (auto& v : x) v = n(rng);
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // a zero block
  x[70] = 3.0f, x[100] = -2.5f;                     // outliers of both signs
  std::vector<int8_t> q8(cols);
  std::vector<uint8_t> q4(cols / 2);
  std::vector<uint16_t> s8(cols / 32), s4(cols / 32);
  QuantizeRowQ8(x.data(), cols, q8.data(), s8.data());
  QuantizeRowQ4(x.data(), cols, q4.data(), s4.data());
  const std::vector<float> y8 = Dequantized({ops::WeightType::kQ8, q8.data(), s8.data(), 1, cols}, 0);
  const std::vector<float> y4 = Dequantized({ops::WeightType::kQ4, q4.data(), s4.data(), 1, cols}, 0);
  for (int64_t c = 0; c < cols; ++c) {
    SCOPED_TRACE(c);
    EXPECT_LE(std::fabs(y8[c] - x[c]), BlockBound(&x[c / 32 * 32], true));
    EXPECT_LE(std::fabs(y4[c] - x[c]), BlockBound(&x[c / 32 * 32], false));
  }
  EXPECT_EQ(s8[1], 0);
  EXPECT_EQ(y4[40], 0.0f);
  EXPECT_EQ(q8[70], 127);
  EXPECT_EQ(q4[3 * 16 + 4] & 0x0f, 0);  // column 100 = -2.5 sets d = 2.5 / 8: nibble 0 (q = -8)
}

TEST(QuantizeRows, Q4IsGgufQ4_0) {
  // Values -8..7 twice: the largest magnitude is -8, so d = 1 and nibble = x + 8; byte j pairs column j
  // (low nibble) with column 16 + j (high nibble).
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j % 16) - 8;
  std::vector<uint8_t> q(16);
  uint16_t d = 0;
  QuantizeRowQ4(x.data(), 32, q.data(), &d);
  EXPECT_EQ(d, ops::FloatToHalfBits(1.0f));
  for (int j = 0; j < 16; ++j) EXPECT_EQ(q[j], j | (j << 4)) << j;
}

class QuantizeTest : public TempDirTest {
 protected:
  QuantizeReport Quantize(const std::string& model, const std::string& type, const std::string& out) {
    auto r = QuantizeCheckpoint(model, type, out);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : QuantizeReport{};
  }
};

TEST_F(QuantizeTest, Stories260KEveryType) {
  auto orig = ReadHfFolder(Stories("hf"));
  ASSERT_TRUE(orig.ok()) << orig.status().message();
  for (const std::string type : {"q8", "q4", "f16", "bf16"}) {
    SCOPED_TRACE(type);
    const QuantizeReport rep = Quantize(Stories("hf"), type, Tmp(type));
    const bool quant = type[0] == 'q';
    // The 5 down_proj [64, 172] have rows of 172, not whole blocks of 32: they stay f32 in q8/q4.
    EXPECT_EQ(rep.converted.size(), quant ? 31u : 36u);
    EXPECT_EQ(rep.kept_f32.size(), quant ? 5u : 0u);
    for (const auto& n : rep.kept_f32) EXPECT_NE(n.find("mlp.down_proj"), std::string::npos) << n;
    EXPECT_EQ(rep.copied, (std::vector<std::string>{"tokenizer.model", "tokenizer_config.json"}));
    auto ck = ReadHfFolder(Tmp(type));
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    ExpectStories260KDims(ck->config);
    for (const TensorInfo& t : orig->tensors.tensors()) {
      SCOPED_TRACE(t.name);
      auto want = orig->tensors.LoadAny(t.name);
      auto got = ck->tensors.LoadAny(t.name);
      ASSERT_TRUE(want.ok() && got.ok()) << got.status().message();
      ASSERT_EQ(got->shape, want->shape);
      const bool converted = std::find(rep.converted.begin(), rep.converted.end(), t.name) != rep.converted.end();
      if (!converted) {
        EXPECT_EQ(got->data, want->data);
        continue;
      }
      auto w = ck->tensors.LoadWeight(t.name, t.shape[0], t.shape[1]);
      ASSERT_TRUE(w.ok()) << w.status().message();
      EXPECT_STREQ(ops::WeightTypeName(w->type), type.c_str());
      for (size_t i = 0; i < want->data.size(); ++i) {
        const float x = want->data[i], y = got->data[i];
        if (quant) {
          ASSERT_LE(std::fabs(y - x), BlockBound(&want->data[i / 32 * 32], type == "q8")) << i;
        } else {
          ASSERT_EQ(y, type == "f16" ? ops::HalfBitsToFloat(ops::FloatToHalfBits(x))
                                     : ops::BF16BitsToFloat(ops::FloatToBF16Bits(x))) << i;
        }
      }
    }
  }
}

// The llama2.c .bin and the GGUF hold the same weights with interleaved q/k rows: quantizing them gives the
// HF folder's result byte for byte (q/k permuted to rotate-half; per-row blocks commute with the permutation).
TEST_F(QuantizeTest, SameFolderFromBinGgufAndHf) {
  Quantize(Stories("hf"), "q8", Tmp("hf"));
  const QuantizeReport bin = Quantize(Stories("stories260K.bin"), "q8", Tmp("bin"));
  Quantize(Stories("stories260K.gguf"), "q8", Tmp("gguf"));
  EXPECT_EQ(bin.copied, (std::vector<std::string>{"tokenizer.model"}));  // tok512.model beside the .bin
  auto hf = ReadHfFolder(Tmp("hf"));
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  for (const char* other : {"bin", "gguf"}) {
    SCOPED_TRACE(other);
    auto o = ReadHfFolder(Tmp(other));
    ASSERT_TRUE(o.ok()) << o.status().message();
    EXPECT_FALSE(o->config.attn.rope_interleaved);
    for (const TensorInfo& t : hf->tensors.tensors()) {
      SCOPED_TRACE(t.name);
      const TensorInfo* u = o->tensors.Find(t.name);
      ASSERT_NE(u, nullptr);
      ASSERT_EQ(u->dtype, t.dtype);
      ASSERT_EQ(u->shape, t.shape);
      EXPECT_EQ(std::memcmp(u->data, t.data, t.nbytes), 0);
    }
  }
}

// A q8 copy of stories260K whose model.safetensors or config.json a test then breaks.
class QuantizedBadInput : public QuantizeTest {
 protected:
  void SetUp() override {
    QuantizeTest::SetUp();
    dir_ = Tmp("q8");
    Fresh();
  }
  void Fresh() { Quantize(Stories("hf"), "q8", dir_); }
  // Rewrites model.safetensors after `edit` changed the list of tensors.
  void Rewrite(const std::function<void(std::vector<TensorBytes>*)>& edit) {
    TensorStore store;
    ASSERT_TRUE(ReadSafetensors(dir_ + "/model.safetensors", &store).ok());
    std::vector<TensorBytes> ts;
    for (const TensorInfo& t : store.tensors()) ts.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
    edit(&ts);
    ASSERT_TRUE(WriteSafetensors(dir_ + "/model.safetensors", ts).ok());
  }
  // Sets config.json's "quantization" to the JSON `entry` ("" removes it).
  void SetQuantization(const std::string& entry) {
    const std::string p = dir_ + "/config.json";
    const auto b = ReadBytes(p);
    nlohmann::json j = nlohmann::json::parse(b.begin(), b.end());
    if (entry.empty()) {
      j.erase("quantization");
    } else {
      j["quantization"] = nlohmann::json::parse(entry);
    }
    WriteText(p, j.dump());
  }
  void ExpectBad(const std::string& file, const std::string& also) {
    ExpectErrorNaming(ReadHfFolder(dir_), file, also);
  }
  std::string dir_;
  const std::string q_ = "model.layers.0.self_attn.q_proj.weight";
};

TEST_F(QuantizedBadInput, ConfigEntry) {
  SetQuantization(R"({"type": "q8", "block": 64})");
  ExpectBad("config.json", "'quantization.block' = 64 is not supported");
  SetQuantization(R"({"type": "q8"})");
  ExpectBad("config.json", "'quantization.block' = missing");
  SetQuantization(R"({"type": "q3", "block": 32})");
  ExpectBad("config.json", "'quantization.type' = \"q3\"");
  SetQuantization(R"("q8")");
  ExpectBad("config.json", "field 'quantization' must be");
  SetQuantization(R"({"type": "q4", "block": 32})");
  ExpectBad("model.safetensors", "is I8 (q8) but");
  SetQuantization("");
  ExpectBad("model.safetensors", "has no \"quantization\" entry");
}

TEST_F(QuantizedBadInput, ScaleTensors) {
  const std::string scale = ScaleName(q_);
  auto find = [&](std::vector<TensorBytes>* ts, const std::string& n) {
    return std::find_if(ts->begin(), ts->end(), [&](const TensorBytes& t) { return t.name == n; });
  };
  Rewrite([&](auto* ts) { ts->erase(find(ts, scale)); });
  ExpectBad("model.safetensors", "has no scale tensor '" + scale + "'");
  Fresh();
  Rewrite([&](auto* ts) {  // one scale per row instead of one per block: 64 scales for 128 blocks
    auto s = find(ts, scale);
    s->shape = {64, 1}, s->nbytes = 128;
  });
  ExpectBad("model.safetensors", "scale tensor '" + scale + "' is F16 [64, 1], expected F16 [64, 2]");
  Fresh();
  Rewrite([&](auto* ts) {
    auto s = find(ts, scale);
    s->dtype = DType::kBF16;
  });
  ExpectBad("model.safetensors", "is BF16 [64, 2], expected F16 [64, 2]");
  Fresh();
  Rewrite([&](auto* ts) {  // rows of 48 values: not whole blocks of 32
    auto q = find(ts, q_);
    q->shape = {64, 48}, q->nbytes = 64 * 48;
  });
  ExpectBad("model.safetensors", "has 48 columns, not a multiple of the block size 32");
}

TEST_F(QuantizedBadInput, TruncatedFile) {
  auto b = ReadBytes(dir_ + "/model.safetensors");
  b.resize(b.size() - 1);
  WriteBytes(dir_ + "/model.safetensors", b);
  ExpectBad("model.safetensors", "");
}

TEST_F(QuantizeTest, Errors) {
  ExpectErrorNaming(QuantizeCheckpoint(Stories("hf"), "q5", Tmp("x")), "q5", "not one of q8, q4, f16, bf16");
  ExpectErrorNaming(QuantizeCheckpoint(Stories("hf"), "q8", Stories("hf")), "hf", "must differ");
  ExpectErrorNaming(QuantizeCheckpoint(Tmp("nope"), "q8", Tmp("x")), "nope");
}

}  // namespace
}  // namespace subq
