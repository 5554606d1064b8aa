// safetensors / HF folder reader: the real stories260K/hf folder (checked against the llama2.c .bin),
// sharded checkpoints, F16/BF16 tensors, and corrupted copies of the real files.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/io_test_util.h"

namespace subq {
namespace {

using namespace subq::testing;
using nlohmann::json;

struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Writes a safetensors file from tensors (offsets assigned in order).
void WriteSafetensors(const std::string& path, const std::vector<RawTensor>& ts, const json& extra = json::object()) {
  json h = extra;
  std::vector<uint8_t> data;
  for (const auto& t : ts) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  const std::string hs = h.dump();
  std::vector<uint8_t> out(8);
  const uint64_t n = hs.size();
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), hs.begin(), hs.end());
  out.insert(out.end(), data.begin(), data.end());
  WriteBytes(path, out);
}

// Rewrites a real safetensors file with an edited JSON header (data section unchanged).
void RewriteHeader(const std::string& src, const std::string& dst, const std::function<void(json&)>& edit) {
  auto b = ReadBytes(src);
  uint64_t n;
  std::memcpy(&n, b.data(), 8);
  json h = json::parse(b.begin() + 8, b.begin() + 8 + n);
  edit(h);
  const std::string hs = h.dump();
  std::vector<uint8_t> out(8);
  const uint64_t m = hs.size();
  std::memcpy(out.data(), &m, 8);
  out.insert(out.end(), hs.begin(), hs.end());
  out.insert(out.end(), b.begin() + 8 + n, b.end());
  WriteBytes(dst, out);
}

TEST(HfFolder, RealStories260K) {
  auto r = ReadHfFolder(Stories("hf"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = r->config;
  EXPECT_EQ(r->format, "hf");
  EXPECT_EQ(r->tensors.source, Stories("hf"));
  ExpectStories260KDims(c);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.attn.rope_interleaved);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(r->tensors.tensors().size(), 47u);
  // Through ReadCheckpoint too (folder, with and without a trailing slash, and config.json itself).
  for (const std::string p : {Stories("hf"), Stories("hf/"), Stories("hf/config.json")}) {
    auto r2 = ReadCheckpoint(p);
    ASSERT_TRUE(r2.ok()) << p << ": " << r2.status().message();
    EXPECT_EQ(r2->format, "hf");
  }
}

TEST(HfFolder, SameWeightsAsLlama2cBin) {
  auto h = ReadHfFolder(Stories("hf"));
  auto b = ReadLlama2c(Stories("stories260K.bin"));
  ASSERT_TRUE(h.ok() && b.ok());
  const int H = 8, Hkv = 4, hd = 8, D = 64;
  for (const TensorInfo& t : b->tensors.tensors()) {
    SCOPED_TRACE(t.name);
    const TensorInfo* u = h->tensors.Find(t.name);
    ASSERT_NE(u, nullptr);
    EXPECT_EQ(u->shape, t.shape);
    std::vector<float> hf = AsFloats(u);
    if (t.name.find("q_proj") != std::string::npos) {
      EXPECT_NE(hf, AsFloats(&t));  // really permuted
      hf = UnpermuteRows(hf, H, hd, D);
    } else if (t.name.find("k_proj") != std::string::npos) {
      hf = UnpermuteRows(hf, Hkv, hd, D);
    }
    EXPECT_EQ(hf, AsFloats(&t));
  }
}

class SafetensorsTmp : public TempDirTest {};

TEST_F(SafetensorsTmp, HalfAndBFloat16) {
  const std::string dir = tmp_;
  // F16: 1, -2, 0.5, 65504, smallest subnormal, -0 ; BF16: 1, -2, 3.140625, 1e30-ish
  const std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000};
  const std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x4049, 0x7149};
  auto bytes = [](const std::vector<uint16_t>& v) {
    std::vector<uint8_t> b(v.size() * 2);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  };
  WriteSafetensors(dir + "/m.safetensors", {{"a", "F16", {2, 3}, bytes(f16)}, {"b", "BF16", {4}, bytes(bf16)}},
                   json{{"__metadata__", {{"format", "pt"}}}});
  TensorStore st;
  Status s = ReadSafetensors(dir + "/m.safetensors", &st);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(st.Find("a")->dtype, DType::kF16);
  EXPECT_EQ(st.Find("b")->dtype, DType::kBF16);
  auto a = st.Load("a", {2, 3});
  auto b = st.Load("b", {4});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->data, (std::vector<float>{1.0f, -2.0f, 0.5f, 65504.0f, 5.9604645e-8f, -0.0f}));
  EXPECT_TRUE(std::signbit(a->data[5]));
  EXPECT_EQ(b->data[0], 1.0f);
  EXPECT_EQ(b->data[1], -2.0f);
  EXPECT_EQ(b->data[2], 3.140625f);
  EXPECT_NEAR(b->data[3], 9.9e29f, 1e28f);
  EXPECT_FALSE(st.Load("a", {3, 2}).ok());
}

class HfCorrupt : public TempDirTest {
 protected:
  // A copy of the real HF folder in tmp_/m, for editing.
  std::string CopyFolder() {
    const std::string d = Tmp("m");
    std::filesystem::create_directory(d);
    for (const char* f : {"config.json", "model.safetensors"})
      std::filesystem::copy_file(Stories(std::string("hf/") + f), d + "/" + f);
    return d;
  }
  void ExpectBadFolder(const std::string& dir, const std::string& file, const std::string& also = "") {
    ExpectErrorNaming(ReadHfFolder(dir), file, also);
    ExpectErrorNaming(ReadCheckpoint(dir), file, also);
  }
};

TEST_F(HfCorrupt, ShardedFromRealTensors) {
  auto real = ReadHfFolder(Stories("hf"));
  ASSERT_TRUE(real.ok());
  const std::string d = Tmp("sharded");
  std::filesystem::create_directory(d);
  std::filesystem::copy_file(Stories("hf/config.json"), d + "/config.json");
  std::vector<RawTensor> shard[2];
  json wm = json::object();
  int i = 0;
  for (const TensorInfo& t : real->tensors.tensors()) {
    const int s = (i++ * 2) / int(real->tensors.tensors().size());
    shard[s].push_back({t.name, "F32", t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
    wm[t.name] = fmt::format("model-0000{}-of-00002.safetensors", s + 1);
  }
  WriteSafetensors(d + "/model-00001-of-00002.safetensors", shard[0]);
  WriteSafetensors(d + "/model-00002-of-00002.safetensors", shard[1]);
  WriteText(d + "/model.safetensors.index.json", json{{"metadata", {{"total_size", 1}}}, {"weight_map", wm}}.dump());

  auto r = ReadCheckpoint(d);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->tensors.tensors().size(), real->tensors.tensors().size());
  for (const TensorInfo& t : real->tensors.tensors()) EXPECT_EQ(AsFloats(r->tensors.Find(t.name)), AsFloats(&t));
  EXPECT_NE(r->tensors.Find("model.norm.weight")->file.find("00002-of-00002"), std::string::npos);

  // A tensor mapped to the wrong shard, a shard that is missing, a tensor in no shard, a bad index.
  const std::string index = d + "/model.safetensors.index.json";
  json bad = wm;
  bad["model.norm.weight"] = "model-00001-of-00002.safetensors";
  WriteText(index, json{{"weight_map", bad}}.dump());
  ExpectErrorNaming(ReadCheckpoint(d), index, "model.norm.weight");
  bad = wm;
  bad["model.norm.weight"] = "model-00003-of-00002.safetensors";
  WriteText(index, json{{"weight_map", bad}}.dump());
  ExpectErrorNaming(ReadCheckpoint(d), "model-00003-of-00002.safetensors", "cannot open");
  bad = wm;
  bad["model.extra.weight"] = "model-00001-of-00002.safetensors";
  WriteText(index, json{{"weight_map", bad}}.dump());
  ExpectErrorNaming(ReadCheckpoint(d), index, "model.extra.weight");
  bad = wm;
  bad["model.norm.weight"] = "../../etc/passwd";
  WriteText(index, json{{"weight_map", bad}}.dump());
  ExpectErrorNaming(ReadCheckpoint(d), index);
  bad = wm;
  bad.erase("model.norm.weight");  // its shard still has it: found, so only the map is short -> fine
  WriteText(index, json{{"weight_map", bad}}.dump());
  EXPECT_TRUE(ReadCheckpoint(d).ok());
  std::filesystem::remove(d + "/model-00002-of-00002.safetensors");
  WriteText(index, json{{"weight_map", bad}}.dump());
  ExpectErrorNaming(ReadCheckpoint(d), "model-00002-of-00002.safetensors");
  WriteText(index, "{\"weight_map\": {");
  ExpectErrorNaming(ReadCheckpoint(d), index, "malformed JSON");
  WriteText(index, "{\"weight_map\": []}");
  ExpectErrorNaming(ReadCheckpoint(d), index, "weight_map");
}

TEST_F(HfCorrupt, TruncatedAndBadHeaderLength) {
  const std::string d = CopyFolder(), st = d + "/model.safetensors";
  const auto orig = ReadBytes(st);
  for (size_t n : {size_t{0}, size_t{7}, size_t{8}, size_t{100}, size_t{4912}, orig.size() / 2, orig.size() - 1}) {
    SCOPED_TRACE(n);
    WriteBytes(st, std::vector<uint8_t>(orig.begin(), orig.begin() + n));
    ExpectBadFolder(d, st);
  }
  for (uint64_t len : {uint64_t{0}, uint64_t{2}, uint64_t{orig.size()}, ~uint64_t{0}, uint64_t{1} << 40}) {
    SCOPED_TRACE(len);
    auto b = orig;
    Poke<uint64_t>(&b, 0, len);
    WriteBytes(st, b);
    ExpectBadFolder(d, st);
  }
}

TEST_F(HfCorrupt, HeaderEdits) {
  const std::string d = CopyFolder(), st = d + "/model.safetensors", src = Stories("hf/model.safetensors");
  const std::string emb = "model.embed_tokens.weight";
  const std::vector<std::pair<std::string, std::function<void(json&)>>> edits = {
      {"I64", [&](json& h) { h[emb]["dtype"] = "I64"; }},
      {"dtype", [&](json& h) { h[emb]["dtype"] = 5; }},
      {"span", [&](json& h) { h[emb]["shape"] = {512, 65}; }},                  // wrong shape
      {"shape", [&](json& h) { h[emb]["shape"] = {512, -64}; }},
      {"shape", [&](json& h) { h[emb]["shape"] = "512x64"; }},
      {"larger than the file", [&](json& h) { h[emb]["shape"] = {1ull << 40, 1ull << 40}; }},
      {"outside the data section", [&](json& h) { h[emb]["data_offsets"] = {0, 1ull << 40}; }},  // past EOF
      {"outside the data section", [&](json& h) { h[emb]["data_offsets"] = {131072, 0}; }},      // begin > end
      {"data_offsets", [&](json& h) { h[emb]["data_offsets"] = {0}; }},
      {"needs dtype", [&](json& h) { h[emb].erase("data_offsets"); }},
      {"not a JSON object", [&](json& h) { h[emb] = 3; }},
      {"overlap", [&](json& h) { h["model.norm.weight"]["data_offsets"] = {0, 256}; }},
      {"missing tensor 'model.layers.3.mlp.up_proj.weight'", [&](json& h) { h.erase("model.layers.3.mlp.up_proj.weight"); }},
      {"k_proj.weight' has shape [64, 32], expected [32, 64]",  // same bytes, transposed shape
       [&](json& h) { h["model.layers.0.self_attn.k_proj.weight"]["shape"] = {64, 32}; }},
  };
  for (const auto& [also, edit] : edits) {
    SCOPED_TRACE(also);
    RewriteHeader(src, st, edit);
    ExpectBadFolder(d, st, also);
  }
}

TEST_F(HfCorrupt, MalformedJsonAndConfig) {
  const std::string d = CopyFolder(), st = d + "/model.safetensors", cfg = d + "/config.json";
  auto b = ReadBytes(st);
  b[8] = '[';  // header no longer parses
  WriteBytes(st, b);
  ExpectBadFolder(d, st, "malformed");
  b[8] = '{';
  b[20] = '\n';  // a raw newline inside a key: still one line in the message
  WriteBytes(st, b);
  ExpectBadFolder(d, st);
  std::filesystem::copy_file(Stories("hf/model.safetensors"), st, std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(ReadHfFolder(d).ok());

  const auto good_bytes = ReadBytes(cfg);
  const std::string good(good_bytes.begin(), good_bytes.end());
  WriteText(cfg, good.substr(0, good.size() / 2));
  ExpectBadFolder(d, cfg, "malformed JSON");
  WriteText(cfg, "[1, 2]");
  ExpectBadFolder(d, cfg);
  json j = json::parse(good);
  j["hidden_size"] = "64";
  WriteText(cfg, j.dump());
  ExpectBadFolder(d, cfg, "hidden_size");
  j = json::parse(good);
  j["hidden_size"] = 128;  // config disagrees with the tensors
  WriteText(cfg, j.dump());
  ExpectBadFolder(d, d, "model.embed_tokens.weight' has shape [512, 64], expected [512, 128]");
  j = json::parse(good);
  j["tie_word_embeddings"] = false;  // then lm_head.weight must exist
  WriteText(cfg, j.dump());
  ExpectBadFolder(d, d, "lm_head.weight");
  j = json::parse(good);
  j["model_type"] = "gpt2";
  WriteText(cfg, j.dump());
  ExpectBadFolder(d, cfg, "gpt2");

  std::filesystem::remove(cfg);
  ExpectBadFolder(d, cfg, "config.json");
  WriteText(cfg, good);
  std::filesystem::remove(st);
  ExpectBadFolder(d, d, "no model.safetensors");
}

}  // namespace
}  // namespace subq
