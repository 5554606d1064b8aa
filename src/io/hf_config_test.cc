// config.json parsing: Llama fields and defaults, rope_scaling / rope_parameters, family dispatch,
// the hybrid-layer fields, and clear errors for wrong types and inconsistent dims.
#include "io/hf_config.h"

#include <gtest/gtest.h>

#include "io/io_test_util.h"

namespace subq {
namespace {

using nlohmann::json;
using namespace subq::testing;

json RealConfig() {
  auto b = ReadBytes(Stories("hf/config.json"));
  return json::parse(b.begin(), b.end());
}

Result<ModelConfig> Parse(const json& j) {
  ModelConfig c;
  Status s = ParseHfConfig(j, "/x/config.json", &c);
  if (!s.ok()) return s;
  return c;
}

void ExpectError(const json& j, const std::string& also) {
  auto r = Parse(j);
  ASSERT_FALSE(r.ok()) << j.dump();
  EXPECT_NE(r.status().message().find("/x/config.json"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(also), std::string::npos) << r.status().message();
}

TEST(HfConfig, RealStories260K) {
  auto r = ReadHfConfigFile(Stories("hf/config.json"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = *r;
  ExpectStories260KDims(c);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.attn.rope_theta, 10000.0f);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.attn.rope_interleaved);
  EXPECT_EQ(c.attn.rope_scaling.type, "");
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  ASSERT_EQ(c.layers.size(), 5u);
}

TEST(HfConfig, LlamaDefaults) {
  json j = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 128}, {"intermediate_size", 256},
            {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"vocab_size", 1000}};
  auto r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->attn.n_kv_heads, 4);
  EXPECT_EQ(r->attn.head_dim, 32);
  EXPECT_FALSE(r->tie_embeddings);  // transformers' LlamaConfig default
  EXPECT_FLOAT_EQ(r->norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(r->attn.rope_theta, 10000.0f);
  EXPECT_EQ(r->max_seq_len, 2048);
  EXPECT_EQ(r->bos_id, 1);
  EXPECT_EQ(r->eos_id, 2);
  // Explicit head_dim that does not equal hidden/heads (and hidden not divisible) is fine.
  j["head_dim"] = 48;
  j["num_attention_heads"] = 3;
  j["bos_token_id"] = nullptr;
  j["eos_token_id"] = {7, 8};
  r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->attn.head_dim, 48);
  EXPECT_EQ(r->eos_id, 7);
}

TEST(HfConfig, Llama3RopeScalingOldAndNewStyle) {
  json j = RealConfig();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  j["rope_theta"] = 500000.0;
  auto r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->attn.rope_scaling.type, "llama3");
  EXPECT_FLOAT_EQ(r->attn.rope_scaling.factor, 8.0f);
  EXPECT_EQ(r->attn.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(r->attn.rope_theta, 500000.0f);

  j = RealConfig();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 32.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->attn.rope_scaling.type, "llama3");
  EXPECT_FLOAT_EQ(r->attn.rope_scaling.factor, 32.0f);
  EXPECT_FLOAT_EQ(r->attn.rope_theta, 500000.0f);

  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 20000.0}};
  r = Parse(j);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->attn.rope_scaling.type, "");
  EXPECT_FLOAT_EQ(r->attn.rope_theta, 20000.0f);

  j["rope_parameters"] = {{"type", "yarn"}, {"factor", 4.0}};
  ExpectError(j, "rope_parameters.type");
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  ExpectError(j, "rope_parameters.low_freq_factor' is missing");
  j.erase("rope_parameters");
  j["rope_scaling"] = "llama3";
  ExpectError(j, "rope_scaling' must be an object");
}

TEST(HfConfig, LlamaErrorsNameTheField) {
  const std::vector<std::tuple<std::string, json, std::string>> cases = {
      {"hidden_size", "64", "field 'hidden_size' must be an integer (found string)"},
      {"hidden_size", 64.5, "field 'hidden_size' must be an integer"},
      {"hidden_size", 0, "field 'hidden_size' = 0 is out of range"},
      {"hidden_size", -64, "hidden_size"},
      {"hidden_size", 1e300, "hidden_size"},
      {"hidden_size", 18446744073709551615ull, "hidden_size"},
      {"num_attention_heads", 7, "does not divide num_attention_heads 7"},
      {"num_key_value_heads", 3, "num_key_value_heads' = 3 does not divide"},
      {"head_dim", 7, "head_dim' = 7 must be even"},
      {"rms_norm_eps", -1.0, "rms_norm_eps"},
      {"rms_norm_eps", "tiny", "rms_norm_eps"},
      {"tie_word_embeddings", 1, "tie_word_embeddings' must be true or false"},
      {"eos_token_id", json::array(), "eos_token_id' is an empty list"},
      {"eos_token_id", 999, "eos_token_id' = 999 is out of range"},
      {"eos_token_id", json::array({"x"}), "eos_token_id"},
      {"hidden_act", "gelu", "hidden_act"},
      {"attention_bias", true, "attention_bias"},
      {"model_type", 5, "model_type"},
  };
  for (const auto& [key, value, msg] : cases) {
    SCOPED_TRACE(key + " = " + value.dump());
    json j = RealConfig();
    j[key] = value;
    ExpectError(j, msg);
  }
  json j = RealConfig();
  j.erase("head_dim");
  j["num_attention_heads"] = 6;
  j["num_key_value_heads"] = 6;
  ExpectError(j, "num_attention_heads' = 6 does not divide hidden_size 64");
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
    json j = RealConfig();
    j.erase(key);
    ExpectError(j, fmt::format("field '{}' is missing", key));
  }
}

TEST(HfConfig, FamilyDispatch) {
  ExpectError(json{{"model_type", "gpt2"}}, "model_type 'gpt2' is not supported");
  ExpectError(json::object(), "no 'model_type'");
  ExpectError(json::array(), "not a JSON object");
  // The other families go to their own parsers: either the config parses as that family, or the
  // family's parser rejects the (nearly empty) config with an error naming config.json.
  const std::vector<std::pair<json, std::string>> others = {
      {{{"model_type", "mamba2"}}, "mamba2"},
      {{{"model_type", "llamba"}}, "llamba"},
      {{{"model_type", "mamba3"}}, "mamba3"},
      {{{"model_type", "gated_deltanet"}}, "gated_deltanet"},
      {{{"ssm_cfg", json::object()}, {"d_model", 64}}, "llamba"}};  // Llamba without model_type
  for (const auto& [j, family] : others) {
    SCOPED_TRACE(j.dump());
    auto r = Parse(j);
    if (r.ok()) {
      EXPECT_EQ(r->family, family);
    } else {
      EXPECT_NE(r.status().message().find("/x/config.json"), std::string::npos) << r.status().message();
      EXPECT_EQ(r.status().message().find("model_type '"), std::string::npos) << r.status().message();
    }
  }
}

TEST(HfConfig, ReadFileErrors) {
  auto r = ReadHfConfigFile("/nonexistent/config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/config.json"), std::string::npos);
}

ModelConfig Base() {
  ModelConfig c;
  c.dim = 64;
  c.n_layers = 6;
  return c;
}

TEST(HybridFields, LayersAndHeads) {
  json j = {{"attention_layers", {1, 4}},
            {"attention_heads", {{"3", {0, 5}}, {"0", {2}}}},
            {"attn_cfg", {{"num_heads", 8}, {"num_key_value_heads", 4}, {"rope_theta", 500000.0}}}};
  ModelConfig c = Base();
  Status s = ParseHybridFields(j, "/x/config.json", MixerKind::kDiscreteMamba2, &c);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(c.layers.size(), 6u);
  EXPECT_EQ(c.layers[0].mixer, MixerKind::kDiscreteMamba2);
  EXPECT_EQ(c.layers[0].attention_heads, std::vector<int>{2});
  EXPECT_EQ(c.layers[1].mixer, MixerKind::kAttention);
  EXPECT_EQ(c.layers[2].mixer, MixerKind::kDiscreteMamba2);
  EXPECT_TRUE(c.layers[2].attention_heads.empty());
  EXPECT_EQ(c.layers[3].attention_heads, (std::vector<int>{0, 5}));
  EXPECT_EQ(c.layers[4].mixer, MixerKind::kAttention);
  EXPECT_EQ(c.attn.n_heads, 8);
  EXPECT_EQ(c.attn.n_kv_heads, 4);
  EXPECT_EQ(c.attn.head_dim, 8);
  EXPECT_FLOAT_EQ(c.attn.rope_theta, 500000.0f);
  EXPECT_FALSE(c.attn.rope_interleaved);

  c = Base();  // no hybrid fields: all recurrent
  ASSERT_TRUE(ParseHybridFields(json::object(), "/x/config.json", MixerKind::kMamba2, &c).ok());
  for (const auto& l : c.layers) EXPECT_EQ(l.mixer, MixerKind::kMamba2);
}

TEST(HybridFields, Errors) {
  const json attn = {{"num_heads", 8}};
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"attention_layers", {6}}, {"attn_cfg", attn}}, "attention_layers"},
      {{{"attention_layers", {-1}}, {"attn_cfg", attn}}, "attention_layers"},
      {{{"attention_layers", "1"}, {"attn_cfg", attn}}, "attention_layers"},
      {{{"attention_layers", {1}}}, "attn_cfg.num_heads"},
      {{{"attention_heads", {{"9", {0}}}}, {"attn_cfg", attn}}, "attention_heads.9"},
      {{{"attention_heads", {{"x", {0}}}}, {"attn_cfg", attn}}, "attention_heads.x"},
      {{{"attention_heads", {{"2", {8}}}}, {"attn_cfg", attn}}, "attention_heads.2"},
      {{{"attention_heads", {{"2", {1, 1}}}}, {"attn_cfg", attn}}, "twice"},
      {{{"attention_heads", {{"2", {1}}}}, {"attention_layers", {2}}, {"attn_cfg", attn}}, "already"},
      {{{"attention_heads", {1, 2}}, {"attn_cfg", attn}}, "attention_heads' must be an object"},
      {{{"attn_cfg", {{"num_heads", 7}}}}, "attn_cfg.num_heads"},
      {{{"attn_cfg", {{"num_heads", 8}, {"num_key_value_heads", 3}}}}, "attn_cfg.num_key_value_heads"},
      {{{"attn_cfg", {{"num_heads", "8"}}}}, "attn_cfg.num_heads"},
  };
  for (const auto& [j, msg] : cases) {
    SCOPED_TRACE(j.dump());
    ModelConfig c = Base();
    Status s = ParseHybridFields(j, "/x/config.json", MixerKind::kMamba2, &c);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("/x/config.json"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(msg), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace subq
