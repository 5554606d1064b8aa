// Hugging Face config.json -> ModelConfig. ParseHfConfig detects the family and calls one parser per
// family (one file each: hf_config_llama.cc, hf_config_mamba2.cc, ...). ConfigFields gives every parser
// the same typed, range-checked field access, so a wrong type or value is an error that names
// config.json and the field.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/status.h"

namespace subq {

// Dispatch on model_type / architectures / keys; see each parser for the fields it reads.
Status ParseHfConfig(const nlohmann::json& j, const std::string& path, ModelConfig* cfg);
// Reads and parses a config.json file (I/O and JSON syntax errors name the file).
Result<ModelConfig> ReadHfConfigFile(const std::string& path);

Status ParseLlamaConfig(const nlohmann::json& j, const std::string& path, ModelConfig* cfg);
Status ParseMamba2Config(const nlohmann::json& j, const std::string& path, ModelConfig* cfg);
Status ParseLlambaConfig(const nlohmann::json& j, const std::string& path, ModelConfig* cfg);
Status ParseMamba3Config(const nlohmann::json& j, const std::string& path, ModelConfig* cfg);
Status ParseGatedDeltaNetConfig(const nlohmann::json& j, const std::string& path, ModelConfig* cfg);

// The inverse of ParseHfConfig (hf_config_write.cc): config.json of any config the engine reads (llama,
// mamba2 (transformers layout + subq's mlp_cfg), llamba, mamba3, gated_deltanet; layer and head hybrids).
// Errors for a config the family's config.json cannot carry, so Parse(Write(c)) == c field by field.
Result<nlohmann::ordered_json> WriteHfConfig(const ModelConfig& c);

// {rope_type|type, rope_theta, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings}
// (default or llama3) into attn; `prefix` names the object in errors.
Status ParseRopeObject(const nlohmann::json& r, const std::string& path, const std::string& prefix,
                       AttentionConfig* attn);

// Sets cfg->layers (cfg->n_layers and cfg->dim must be set): every layer is `recurrent_kind` except
//   "attention_layers": [i, ...]            -> full attention layers (kAttention);
//   "attention_heads": {"3": [0, 5], ...}   -> attention heads kept inside recurrent layer 3 (head-level hybrid).
// Attention parameters for those come from "attn_cfg": {num_heads, num_key_value_heads (default num_heads),
// head_dim (default dim / num_heads), rope_theta, rope_scaling (optional, as Llama's)} into cfg->attn
// (rope_interleaved false). Out-of-range
// layer or head indices, or a layer listed in both, are errors.
// subq extension for distilled students whose blocks keep the teacher's SwiGLU MLP (Mamba-2 / Mamba-3
// families): "mlp_cfg": {"intermediate_size": F, "bias": false, "act_fn": "silu"} sets cfg->hidden_dim = F
// (tensors norm2.weight and mlp.{gate,up,down}_proj.weight per block). Absent: no MLP.
// subq extension of Llama configs: "oryx_cfg" turns layers into Oryx multi-mixer layers (hf_config_oryx.cc).
Status ParseOryxFields(const nlohmann::json& j, const std::string& path, ModelConfig* cfg);
Status ParseMlpCfg(const nlohmann::json& j, const std::string& path, ModelConfig* cfg);
Status ParseHybridFields(const nlohmann::json& j, const std::string& path, MixerKind recurrent_kind,
                         ModelConfig* cfg);

// Typed access to the fields of one JSON object of a config file. A field that is absent or null is
// "missing": optional getters leave *out untouched, required ones fail. Errors read
// "<path>: field '<prefix><key>' ...".
class ConfigFields {
 public:
  ConfigFields(const nlohmann::json& j, std::string path, std::string prefix = "")
      : j_(j), path_(std::move(path)), prefix_(std::move(prefix)) {}

  bool Has(const std::string& key) const;
  // Integers in [lo, hi] (a float with an integral value is not accepted).
  Status Int(const std::string& key, int* out, bool required = false, int64_t lo = 1,
             int64_t hi = int64_t{1} << 30) const;
  // Finite numbers; with positive = true also > 0.
  Status Float(const std::string& key, float* out, bool required = false, bool positive = true) const;
  Status Bool(const std::string& key, bool* out, bool required = false) const;
  Status String(const std::string& key, std::string* out, bool required = false) const;
  // A list of integers in [lo, hi].
  Status IntList(const std::string& key, std::vector<int>* out, bool required = false, int64_t lo = 0,
                 int64_t hi = int64_t{1} << 30) const;
  // Sets *out to the nested object, or to nullptr when missing; any other value is an error. Read its
  // fields with ConfigFields(**out, path, "key.").
  Status Object(const std::string& key, const nlohmann::json** out) const;

  Status Error(const std::string& key, const std::string& what) const;
  const std::string& path() const { return path_; }

 private:
  const nlohmann::json* Get(const std::string& key) const;
  const nlohmann::json& j_;
  std::string path_, prefix_;
};

}  // namespace subq
