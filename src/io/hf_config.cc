// config.json family dispatch, typed field access, and the hybrid-layer fields shared by the
// recurrent families.
#include "io/hf_config.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "io/byte_cursor.h"
#include "io/json_read.h"

namespace subq {

using nlohmann::json;

// ---- ConfigFields ----

const json* ConfigFields::Get(const std::string& key) const {
  if (!j_.is_object()) return nullptr;
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool ConfigFields::Has(const std::string& key) const { return Get(key) != nullptr; }

Status ConfigFields::Error(const std::string& key, const std::string& what) const {
  return Errorf("{}: field '{}{}' {}", path_, prefix_, PrintableName(key), what);
}

Status ConfigFields::Int(const std::string& key, int* out, bool required, int64_t lo, int64_t hi) const {
  const json* v = Get(key);
  if (v == nullptr) return required ? Error(key, "is missing") : Status::Ok();
  if (!v->is_number_integer()) return Error(key, fmt::format("must be an integer (found {})", v->type_name()));
  const bool too_big = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi);
  const int64_t x = too_big ? hi : v->get<int64_t>();
  if (too_big || x < lo || x > hi) return Error(key, fmt::format("= {} is out of range [{}, {}]", v->dump(), lo, hi));
  *out = static_cast<int>(x);
  return Status::Ok();
}

Status ConfigFields::Float(const std::string& key, float* out, bool required, bool positive) const {
  const json* v = Get(key);
  if (v == nullptr) return required ? Error(key, "is missing") : Status::Ok();
  if (!v->is_number()) return Error(key, fmt::format("must be a number (found {})", v->type_name()));
  const double x = v->get<double>();
  if (!std::isfinite(x) || std::fabs(x) > 3e38) return Error(key, "must be a finite number");
  if (positive && !(x > 0)) return Error(key, fmt::format("= {} must be positive", x));
  *out = static_cast<float>(x);
  return Status::Ok();
}

Status ConfigFields::Bool(const std::string& key, bool* out, bool required) const {
  const json* v = Get(key);
  if (v == nullptr) return required ? Error(key, "is missing") : Status::Ok();
  if (!v->is_boolean()) return Error(key, fmt::format("must be true or false (found {})", v->type_name()));
  *out = v->get<bool>();
  return Status::Ok();
}

Status ConfigFields::String(const std::string& key, std::string* out, bool required) const {
  const json* v = Get(key);
  if (v == nullptr) return required ? Error(key, "is missing") : Status::Ok();
  if (!v->is_string()) return Error(key, fmt::format("must be a string (found {})", v->type_name()));
  *out = v->get<std::string>();
  return Status::Ok();
}

Status ConfigFields::IntList(const std::string& key, std::vector<int>* out, bool required, int64_t lo,
                             int64_t hi) const {
  const json* v = Get(key);
  if (v == nullptr) return required ? Error(key, "is missing") : Status::Ok();
  if (!v->is_array()) return Error(key, fmt::format("must be a list of integers (found {})", v->type_name()));
  std::vector<int> r;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& e = (*v)[i];
    if (!e.is_number_integer()) return Error(key, fmt::format("[{}] must be an integer (found {})", i, e.type_name()));
    const bool too_big = e.is_number_unsigned() && e.get<uint64_t>() > static_cast<uint64_t>(hi);
    const int64_t x = too_big ? hi : e.get<int64_t>();
    if (too_big || x < lo || x > hi)
      return Error(key, fmt::format("[{}] = {} is out of range [{}, {}]", i, e.dump(), lo, hi));
    r.push_back(static_cast<int>(x));
  }
  *out = std::move(r);
  return Status::Ok();
}

Status ConfigFields::Object(const std::string& key, const json** out) const {
  *out = Get(key);
  if (*out != nullptr && !(*out)->is_object()) {
    const std::string type = (*out)->type_name();
    *out = nullptr;
    return Error(key, fmt::format("must be an object (found {})", type));
  }
  return Status::Ok();
}

// ---- family dispatch ----

Status ParseHfConfig(const json& j, const std::string& path, ModelConfig* cfg) {
  if (!j.is_object()) return Errorf("{}: config is not a JSON object", path);
  ConfigFields f(j, path);
  std::string model_type;
  SUBQ_RETURN_IF_ERROR(f.String("model_type", &model_type));
  bool llama_arch = false;
  if (auto a = j.find("architectures"); a != j.end() && a->is_array())
    for (const auto& e : *a) llama_arch |= e.is_string() && e.get<std::string>() == "LlamaForCausalLM";
  if (model_type == "llama" || (model_type.empty() && llama_arch)) return ParseLlamaConfig(j, path, cfg);
  if (auto s = j.find("ssm_cfg"); model_type.empty() && s != j.end() && s->is_object())
    if (auto l = s->find("layer"); l != s->end() && *l == "Mamba3")
      return ParseMamba3Config(j, path, cfg);  // mamba_ssm MambaLMHeadModel with Mamba3 layers
  // mamba_ssm configs (no model_type) carry ssm_cfg.layer = "Mamba2".
  const auto ssm = j.find("ssm_cfg");
  const bool mamba_ssm2 = model_type.empty() && ssm != j.end() && ssm->is_object() && ssm->contains("layer") &&
                          (*ssm)["layer"].is_string() && (*ssm)["layer"].get<std::string>() == "Mamba2";
  if (model_type == "mamba2" || mamba_ssm2) return ParseMamba2Config(j, path, cfg);
  if (model_type == "llamba" || (model_type.empty() && f.Has("ssm_cfg") && f.Has("d_model")))
    return ParseLlambaConfig(j, path, cfg);
  if (model_type == "mamba3") return ParseMamba3Config(j, path, cfg);
  if (model_type == "gated_deltanet") return ParseGatedDeltaNetConfig(j, path, cfg);
  if (model_type.empty())
    return Errorf("{}: no 'model_type' and no known architecture; cannot tell the model family", path);
  return Errorf("{}: model_type '{}' is not supported (known: llama, mamba2, llamba, mamba3, gated_deltanet)", path,
                PrintableName(model_type));
}

Result<ModelConfig> ReadHfConfigFile(const std::string& path) {
  SUBQ_ASSIGN_OR_RETURN(const json j, ReadJsonFileWithLimits(path));
  ModelConfig cfg;
  SUBQ_RETURN_IF_ERROR(ParseHfConfig(j, path, &cfg));
  return cfg;
}

// ---- hybrid layers ----

Status ParseHybridFields(const json& j, const std::string& path, MixerKind recurrent_kind, ModelConfig* cfg) {
  if (cfg->n_layers <= 0 || cfg->dim <= 0)
    return Errorf("{}: internal error: ParseHybridFields needs n_layers and dim", path);
  if (cfg->n_layers > (1 << 16)) return Errorf("{}: {} layers is implausible", path, cfg->n_layers);
  ConfigFields f(j, path);
  cfg->layers.assign(cfg->n_layers, LayerConfig{recurrent_kind, {}});

  const json* attn_cfg = nullptr;
  SUBQ_RETURN_IF_ERROR(f.Object("attn_cfg", &attn_cfg));
  if (attn_cfg != nullptr) {
    ConfigFields a(*attn_cfg, path, "attn_cfg.");
    SUBQ_RETURN_IF_ERROR(a.Int("num_heads", &cfg->attn.n_heads, true));
    cfg->attn.n_kv_heads = cfg->attn.n_heads;
    SUBQ_RETURN_IF_ERROR(a.Int("num_key_value_heads", &cfg->attn.n_kv_heads));
    if (cfg->attn.n_heads % cfg->attn.n_kv_heads != 0)
      return a.Error("num_key_value_heads", fmt::format("= {} does not divide num_heads {}", cfg->attn.n_kv_heads,
                                                        cfg->attn.n_heads));
    if (!a.Has("head_dim") && cfg->dim % cfg->attn.n_heads != 0)
      return a.Error("num_heads", fmt::format("= {} does not divide the model dim {} (give head_dim)",
                                              cfg->attn.n_heads, cfg->dim));
    cfg->attn.head_dim = cfg->dim / cfg->attn.n_heads;
    SUBQ_RETURN_IF_ERROR(a.Int("head_dim", &cfg->attn.head_dim));
    if (cfg->attn.head_dim % 2 != 0) return a.Error("head_dim", "must be even (RoPE rotates pairs)");
    SUBQ_RETURN_IF_ERROR(a.Float("rope_theta", &cfg->attn.rope_theta));
    const json* rope = nullptr;
    SUBQ_RETURN_IF_ERROR(a.Object("rope_scaling", &rope));
    if (rope != nullptr) SUBQ_RETURN_IF_ERROR(ParseRopeObject(*rope, path, "attn_cfg.rope_scaling", &cfg->attn));
    cfg->attn.rope_interleaved = false;
  }

  std::vector<int> attn_layers;
  SUBQ_RETURN_IF_ERROR(f.IntList("attention_layers", &attn_layers, false, 0, cfg->n_layers - 1));
  for (int l : attn_layers) cfg->layers[l].mixer = MixerKind::kAttention;

  const json* heads = nullptr;
  SUBQ_RETURN_IF_ERROR(f.Object("attention_heads", &heads));
  if (heads != nullptr) {
    for (const auto& [key, list] : heads->items()) {
      int layer = -1;
      ConfigFields h(*heads, path, "attention_heads.");
      if (key.empty() || key.size() > 6 || key.find_first_not_of("0123456789") != std::string::npos ||
          (layer = std::stoi(key)) >= cfg->n_layers)
        return h.Error(key, fmt::format("names no layer (layers are 0..{})", cfg->n_layers - 1));
      if (cfg->layers[layer].mixer == MixerKind::kAttention)
        return h.Error(key, "names a layer that attention_layers already makes full attention");
      const int max_head = cfg->attn.n_heads > 0 ? cfg->attn.n_heads - 1 : (1 << 30);
      std::vector<int> hs;
      SUBQ_RETURN_IF_ERROR(h.IntList(key, &hs, true, 0, max_head));
      if (std::set<int>(hs.begin(), hs.end()).size() != hs.size()) return h.Error(key, "lists a head twice");
      cfg->layers[layer].attention_heads = std::move(hs);
    }
  }
  const bool uses_attention = !attn_layers.empty() || (heads != nullptr && !heads->empty());
  if (uses_attention && cfg->attn.n_heads <= 0)
    return Errorf("{}: attention_layers/attention_heads are given but attn_cfg.num_heads is not", path);
  return Status::Ok();
}

Status ParseMlpCfg(const nlohmann::json& j, const std::string& path, ModelConfig* cfg) {
  auto it = j.find("mlp_cfg");
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return Errorf("{}: field 'mlp_cfg' must be an object", path);
  for (const auto& [key, v] : it->items()) {
    if (key == "intermediate_size") {
      if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1 << 20))
        return Errorf("{}: field 'mlp_cfg.intermediate_size' must be a positive integer, got {}", path, v.dump());
      cfg->hidden_dim = v.get<int>();
    } else if (key == "bias") {
      if (!v.is_boolean() || v.get<bool>()) return Errorf("{}: field 'mlp_cfg.bias' must be false", path);
    } else if (key == "act_fn") {
      if (!v.is_string() || v.get<std::string>() != "silu")
        return Errorf("{}: field 'mlp_cfg.act_fn' must be \"silu\" (SwiGLU), got {}", path, v.dump());
    } else {
      return Errorf("{}: field 'mlp_cfg.{}' is not a known option", path, key);
    }
  }
  if (cfg->hidden_dim <= 0) return Errorf("{}: field 'mlp_cfg.intermediate_size' is missing", path);
  return Status::Ok();
}

}  // namespace subq
