// config.json parsers of the Mamba-2 (transformers and mamba_ssm origins) and Llamba families.
#include <gtest/gtest.h>

#include "io/hf_config.h"

namespace subq {
namespace {

using nlohmann::json;

Result<ModelConfig> Parse(const json& j) {
  ModelConfig c;
  Status s = ParseHfConfig(j, "/m/config.json", &c);
  if (!s.ok()) return s;
  return c;
}

void ExpectError(const json& j, const std::string& want) {
  auto r = Parse(j);
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << want;
  EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("/m/config.json"), std::string::npos) << r.status().message();
}

// As written by transformers 5.24 Mamba2Config.save_pretrained.
json HfMamba2() {
  return json::parse(R"({
    "architectures": ["Mamba2ForCausalLM"], "bos_token_id": 0, "chunk_size": 8, "conv_kernel": 4,
    "dtype": "float32", "eos_token_id": 2, "expand": 2, "head_dim": 8, "hidden_act": "silu", "hidden_size": 16,
    "initializer_range": 0.1, "layer_norm_epsilon": 1e-05, "model_type": "mamba2", "n_groups": 2, "num_heads": 4,
    "num_hidden_layers": 2, "pad_token_id": 1, "rescale_prenorm_residual": false, "residual_in_fp32": true,
    "state_size": 8, "tie_word_embeddings": false, "time_step_floor": 0.0001,
    "time_step_limit": [0.0, {"__float__": "Infinity"}], "time_step_max": 0.1, "time_step_min": 0.001,
    "time_step_rank": 1, "transformers_version": "5.24.0", "use_bias": false, "use_cache": true,
    "use_conv_bias": true, "vocab_size": 50})");
}

// state-spaces/mamba2-130m config.json (mamba_ssm MambaLMHeadModel).
json MambaSsm130m() {
  return json::parse(R"({"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277,
    "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true,
    "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 16, "tie_embeddings": true})");
}

// Llamba-1B layout (SPEC section 3).
json Llamba1B() {
  return json::parse(R"({"model_type": "llamba", "d_model": 2048, "n_layer": 16, "vocab_size": 128256,
    "pad_vocab_size_multiple": 8, "tie_embeddings": true, "lm_head_bias": false, "norm_epsilon": 1e-5,
    "resid_dropout": 0.0, "ssm_cfg": {"d_state": 64, "n_v_heads": 32, "n_qk_heads": 32, "d_conv": 4,
    "expand": 1, "chunk_size": 128, "activation": "identity", "bias": false, "conv_bias": true},
    "mlp_cfg": {"intermediate_size": 8192, "bias": false, "act_fn": "silu"}})");
}

TEST(HfConfigMamba2, Transformers) {
  auto r = Parse(HfMamba2());
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = r.value();
  EXPECT_EQ(c.family, "mamba2");
  EXPECT_EQ(c.dim, 16);
  EXPECT_EQ(c.hidden_dim, 0);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.vocab_size, 50);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.mamba2.n_heads, 4);
  EXPECT_EQ(c.mamba2.head_dim, 8);
  EXPECT_EQ(c.mamba2.state_size, 8);
  EXPECT_EQ(c.mamba2.n_groups, 2);
  EXPECT_EQ(c.mamba2.chunk_size, 8);
  EXPECT_TRUE(c.mamba2.norm_grouped);
  ASSERT_EQ(c.layers.size(), 2u);
  EXPECT_EQ(c.layers[1].mixer, MixerKind::kMamba2);
}

TEST(HfConfigMamba2, MambaSsm) {
  auto r = Parse(MambaSsm130m());
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = r.value();
  EXPECT_EQ(c.family, "mamba2");
  EXPECT_EQ(c.vocab_size, 50288);  // padded to a multiple of 16
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.mamba2.n_heads, 24);
  EXPECT_EQ(c.mamba2.head_dim, 64);
  EXPECT_EQ(c.mamba2.state_size, 128);
  EXPECT_EQ(c.mamba2.n_groups, 1);
  EXPECT_EQ(c.mamba2.chunk_size, 256);
  EXPECT_TRUE(c.mamba2.norm_grouped);
  EXPECT_EQ(c.layers.size(), 24u);
}

TEST(HfConfigMamba2, Errors) {
  json j = HfMamba2();
  j["use_bias"] = true;
  ExpectError(j, "use_bias");
  j = HfMamba2();
  j["num_heads"] = 3;
  ExpectError(j, "must equal heads * head_dim");
  j = HfMamba2();
  j["n_groups"] = 3;
  ExpectError(j, "is not a multiple of the number of groups 3");
  j = HfMamba2();
  j["time_step_limit"] = json::array({0.0, 10.0});
  ExpectError(j, "time_step_limit");
  j = HfMamba2();
  j.erase("num_heads");
  ExpectError(j, "field 'num_heads' is missing");
  j = HfMamba2();
  j["attention_heads"] = {{"0", {1}}};
  j["attn_cfg"] = {{"num_heads", 4}};
  ExpectError(j, "discrete_mamba2 (llamba) layers only");

  j = MambaSsm130m();
  j["ssm_cfg"]["dstate"] = 64;
  ExpectError(j, "field 'ssm_cfg.dstate' is not a known");
  j = MambaSsm130m();
  j["ssm_cfg"]["headdim"] = 100;
  ExpectError(j, "ssm_cfg.headdim' = 100 does not divide d_inner");
  j = MambaSsm130m();
  j["ssm_cfg"]["ngroups"] = 5;
  ExpectError(j, "number of groups 5");
  j = MambaSsm130m();
  j["ssm_cfg"]["norm_before_gate"] = true;
  ExpectError(j, "norm_before_gate");
  j = MambaSsm130m();
  j["d_intermediate"] = 1536;
  ExpectError(j, "d_intermediate");
  j = MambaSsm130m();
  j["attn_layer_idx"] = {3};
  ExpectError(j, "attn_layer_idx");
}

TEST(HfConfigLlamba, Llamba1B) {
  auto r = Parse(Llamba1B());
  ASSERT_TRUE(r.ok()) << r.status().message();
  const ModelConfig& c = r.value();
  EXPECT_EQ(c.family, "llamba");
  EXPECT_EQ(c.dim, 2048);
  EXPECT_EQ(c.hidden_dim, 8192);
  EXPECT_EQ(c.n_layers, 16);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.dm2.d_state, 64);
  EXPECT_EQ(c.dm2.n_v_heads, 32);
  EXPECT_EQ(c.dm2.n_qk_heads, 32);
  EXPECT_EQ(c.dm2.head_dim, 64);
  EXPECT_EQ(c.dm2.chunk_size, 128);
  EXPECT_TRUE(c.dm2.conv_bias);
  EXPECT_EQ(c.layers[15].mixer, MixerKind::kDiscreteMamba2);
  // Without model_type, ssm_cfg + d_model still means llamba.
  json j = Llamba1B();
  j.erase("model_type");
  auto r2 = Parse(j);
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ(r2->family, "llamba");
}

TEST(HfConfigLlamba, Hybrids) {
  json j = Llamba1B();
  j["n_layer"] = 4;
  j["attention_layers"] = {1};
  j["attention_heads"] = {{"2", {5, 0}}};
  j["attn_cfg"] = {{"num_heads", 32}, {"num_key_value_heads", 8}, {"rope_theta", 500000.0}};
  auto r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->layers[1].mixer, MixerKind::kAttention);
  EXPECT_EQ(r->layers[2].mixer, MixerKind::kDiscreteMamba2);
  EXPECT_EQ(r->layers[2].attention_heads, (std::vector<int>{5, 0}));
  EXPECT_EQ(r->attn.head_dim, 64);
  EXPECT_FLOAT_EQ(r->attn.rope_theta, 500000.0f);
  j["attn_cfg"]["head_dim"] = 32;
  ExpectError(j, "need attn_cfg.head_dim = the SSM head dim 64");
}

TEST(HfConfigLlamba, Errors) {
  json j = Llamba1B();
  j["ssm_cfg"]["dt_rank"] = 4;
  ExpectError(j, "field 'ssm_cfg.dt_rank' is not a known");
  j = Llamba1B();
  j["ssm_cfg"]["n_v_heads"] = 30;
  ExpectError(j, "n_v_heads' = 30 does not divide d_inner");
  j = Llamba1B();
  j["ssm_cfg"]["n_qk_heads"] = 3;
  ExpectError(j, "n_qk_heads' = 3 does not divide n_v_heads");
  j = Llamba1B();
  j["ssm_cfg"]["activation"] = "silu";
  ExpectError(j, "activation");
  j = Llamba1B();
  j["ssm_cfg"]["d_inner"] = 4096;
  ExpectError(j, "d_inner' = 4096 != expand * d_model");
  j = Llamba1B();
  j["hidden_size"] = 1024;
  ExpectError(j, "hidden_size' = 1024 disagrees");
  j = Llamba1B();
  j["num_attention_heads"] = 16;
  ExpectError(j, "num_attention_heads' = 16 disagrees");
  j = Llamba1B();
  j.erase("mlp_cfg");
  ExpectError(j, "mlp_cfg' is missing");
  j = Llamba1B();
  j["lm_head_bias"] = true;
  ExpectError(j, "lm_head_bias");
}

}  // namespace
}  // namespace subq
