// config.json parsing of the mamba3 (mamba_ssm) and gated_deltanet (fla) families.
#include <gtest/gtest.h>

#include "io/hf_config.h"

namespace subq {
namespace {

using nlohmann::json;

json Mamba3Json() {
  return json::parse(R"({
    "d_model": 64, "n_layer": 3, "vocab_size": 500, "pad_vocab_size_multiple": 8, "tie_embeddings": false,
    "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true, "d_intermediate": 0,
    "attn_layer_idx": [], "attn_cfg": {},
    "ssm_cfg": {"layer": "Mamba3", "d_state": 32, "headdim": 16, "expand": 2, "ngroups": 2, "rope_fraction": 1.0,
                "is_mimo": true, "mimo_rank": 2, "chunk_size": 16, "is_outproj_norm": true}})");
}

TEST(HfConfigMamba3, ParsesMambaSsmConfigWithoutModelType) {
  ModelConfig c;
  Status s = ParseHfConfig(Mamba3Json(), "config.json", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.family, "mamba3");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.vocab_size, 504);  // padded to a multiple of 8
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.hidden_dim, 0);
  EXPECT_EQ(c.mamba3.n_heads, 8);
  EXPECT_EQ(c.mamba3.head_dim, 16);
  EXPECT_EQ(c.mamba3.state_size, 32);
  EXPECT_EQ(c.mamba3.n_groups, 2);
  EXPECT_EQ(c.mamba3.mimo_rank, 2);
  EXPECT_EQ(c.mamba3.chunk_size, 16);
  EXPECT_TRUE(c.mamba3.output_norm);
  EXPECT_EQ(c.mamba3.n_angles(), 16);
  ASSERT_EQ(c.layers.size(), 3u);
  for (const auto& l : c.layers) EXPECT_EQ(l.mixer, MixerKind::kMamba3);
}

TEST(HfConfigMamba3, SisoDefaultsAndHybridLayers) {
  json j = Mamba3Json();
  j["model_type"] = "mamba3";
  j["ssm_cfg"].erase("is_mimo");
  j["ssm_cfg"].erase("rope_fraction");
  j["attention_layers"] = {1};
  j["attn_cfg"] = {{"num_heads", 4}, {"num_key_value_heads", 2}};
  ModelConfig c;
  Status s = ParseHfConfig(j, "config.json", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.mamba3.mimo_rank, 1);  // mimo_rank is ignored unless is_mimo
  EXPECT_EQ(c.mamba3.n_angles(), 8);
  EXPECT_EQ(c.layers[1].mixer, MixerKind::kAttention);
  EXPECT_EQ(c.layers[0].mixer, MixerKind::kMamba3);
  EXPECT_EQ(c.attn.n_kv_heads, 2);
  EXPECT_EQ(c.attn.head_dim, 16);
}

TEST(HfConfigMamba3, RejectsUnknownAndUnsupportedFields) {
  auto err = [](json j) {
    ModelConfig c;
    Status s = ParseHfConfig(j, "cfg.json", &c);
    return s.ok() ? std::string("ok") : s.message();
  };
  json j = Mamba3Json();
  j["ssm_cfg"]["d_conv"] = 4;
  EXPECT_NE(err(j).find("ssm_cfg.d_conv"), std::string::npos) << err(j);
  j = Mamba3Json();
  j["frobnicate"] = 1;
  EXPECT_NE(err(j).find("frobnicate"), std::string::npos) << err(j);
  j = Mamba3Json();
  j["ssm_cfg"]["rope_fraction"] = 0.25;
  EXPECT_NE(err(j).find("rope_fraction"), std::string::npos) << err(j);
  j = Mamba3Json();
  j["ssm_cfg"]["headdim"] = 24;
  EXPECT_NE(err(j).find("headdim"), std::string::npos) << err(j);
  j = Mamba3Json();
  j["d_intermediate"] = 128;
  EXPECT_NE(err(j).find("d_intermediate"), std::string::npos) << err(j);
  j = Mamba3Json();
  j["attn_layer_idx"] = {1};
  EXPECT_NE(err(j).find("attn_layer_idx"), std::string::npos) << err(j);
  j = Mamba3Json();
  j["ssm_cfg"]["ngroups"] = 3;
  EXPECT_NE(err(j).find("ngroups"), std::string::npos) << err(j);
}

json GdnJson() {
  return json::parse(R"({
    "model_type": "gated_deltanet", "architectures": ["GatedDeltaNetForCausalLM"], "attn_mode": "chunk",
    "hidden_size": 64, "num_hidden_layers": 2, "num_heads": 2, "num_v_heads": 4, "head_dim": 16, "expand_v": 1.5,
    "conv_size": 4, "norm_eps": 1e-6, "hidden_ratio": 4, "intermediate_size": null, "hidden_act": "swish",
    "vocab_size": 300, "tie_word_embeddings": true, "use_gate": true, "use_short_conv": true,
    "allow_neg_eigval": false, "fuse_norm": true, "fuse_swiglu": true, "use_cache": true, "attn": null})");
}

TEST(HfConfigGatedDeltaNet, ParsesFlaConfig) {
  ModelConfig c;
  Status s = ParseHfConfig(GdnJson(), "config.json", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.family, "gated_deltanet");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.gdn.n_qk_heads, 2);
  EXPECT_EQ(c.gdn.n_v_heads, 4);
  EXPECT_EQ(c.gdn.head_k_dim, 16);
  EXPECT_EQ(c.gdn.head_v_dim, 24);
  EXPECT_EQ(c.gdn.conv_kernel, 4);
  EXPECT_FLOAT_EQ(c.gdn.norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_EQ(c.hidden_dim, 256);  // int(64 * 4 * 2/3) = 170 rounded up to 256
  EXPECT_TRUE(c.tie_embeddings);
  for (const auto& l : c.layers) EXPECT_EQ(l.mixer, MixerKind::kGatedDeltaNet);
}

TEST(HfConfigGatedDeltaNet, FlaAttnDictMakesHybridLayers) {
  json j = GdnJson();
  j["intermediate_size"] = 100;
  j["attn"] = {{"layers", {1}},     {"num_heads", 4},         {"num_kv_heads", 2},
               {"qkv_bias", false}, {"window_size", nullptr}, {"rope_theta", 500.0}};
  ModelConfig c;
  Status s = ParseHfConfig(j, "config.json", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.hidden_dim, 100);
  EXPECT_EQ(c.layers[0].mixer, MixerKind::kGatedDeltaNet);
  EXPECT_EQ(c.layers[1].mixer, MixerKind::kAttention);
  EXPECT_EQ(c.attn.n_heads, 4);
  EXPECT_EQ(c.attn.n_kv_heads, 2);
  EXPECT_EQ(c.attn.head_dim, 16);
  EXPECT_FLOAT_EQ(c.attn.rope_theta, 500.0f);
  EXPECT_FALSE(c.attn.rope_interleaved);
}

TEST(HfConfigGatedDeltaNet, RejectsUnsupportedOptions) {
  auto err = [](json j) {
    ModelConfig c;
    Status s = ParseHfConfig(j, "cfg.json", &c);
    return s.ok() ? std::string("ok") : s.message();
  };
  for (const char* key : {"use_gate", "use_short_conv"}) {
    json j = GdnJson();
    j[key] = false;
    EXPECT_NE(err(j).find(key), std::string::npos) << err(j);
  }
  json j = GdnJson();
  j["allow_neg_eigval"] = true;
  EXPECT_NE(err(j).find("allow_neg_eigval"), std::string::npos) << err(j);
  j = GdnJson();
  j["num_v_heads"] = 3;
  EXPECT_NE(err(j).find("num_v_heads"), std::string::npos) << err(j);
  j = GdnJson();
  j["attn"] = {{"layers", {1}}, {"num_heads", 4}, {"window_size", 64}};
  EXPECT_NE(err(j).find("window_size"), std::string::npos) << err(j);
  j = GdnJson();
  j["attn"] = {{"layers", {5}}, {"num_heads", 4}};
  EXPECT_NE(err(j).find("attention_layers"), std::string::npos) << err(j);
}

}  // namespace
}  // namespace subq
