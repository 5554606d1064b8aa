// HF LlamaForCausalLM config.json -> ModelConfig (SPEC section 1). Defaults follow transformers'
// LlamaConfig (rms_norm_eps 1e-6, tie_word_embeddings false, rope_theta 10000, bos 1, eos 2).
// RoPE settings come from `rope_scaling` (transformers 4.x) or `rope_parameters` (5.x).
#include "io/hf_config.h"

namespace subq {

using nlohmann::json;

// Reads rope_theta and llama3 scaling from an object ({rope_type|type, rope_theta, factor, ...}).
Status ParseRopeObject(const json& r, const std::string& path, const std::string& prefix, AttentionConfig* attn) {
  ConfigFields f(r, path, prefix + ".");
  SUBQ_RETURN_IF_ERROR(f.Float("rope_theta", &attn->rope_theta));
  std::string type;
  SUBQ_RETURN_IF_ERROR(f.String("rope_type", &type));
  if (type.empty()) SUBQ_RETURN_IF_ERROR(f.String("type", &type));
  if (type.empty() || type == "default") return Status::Ok();
  if (type != "llama3")
    return f.Error(f.Has("rope_type") ? "rope_type" : "type",
                   fmt::format("= '{}' is not supported (subq supports default and llama3)", type));
  RopeScaling& s = attn->rope_scaling;
  s.type = "llama3";
  SUBQ_RETURN_IF_ERROR(f.Float("factor", &s.factor, true));
  SUBQ_RETURN_IF_ERROR(f.Float("low_freq_factor", &s.low_freq_factor, true));
  SUBQ_RETURN_IF_ERROR(f.Float("high_freq_factor", &s.high_freq_factor, true));
  SUBQ_RETURN_IF_ERROR(f.Int("original_max_position_embeddings", &s.original_max_position_embeddings, true));
  if (!(s.high_freq_factor > s.low_freq_factor))
    return f.Error("high_freq_factor", "must be larger than low_freq_factor");
  return Status::Ok();
}

Status ParseLlamaConfig(const json& j, const std::string& path, ModelConfig* cfg) {
  ConfigFields f(j, path);
  ModelConfig c;
  c.family = "llama";
  SUBQ_RETURN_IF_ERROR(f.Int("hidden_size", &c.dim, true));
  SUBQ_RETURN_IF_ERROR(f.Int("intermediate_size", &c.hidden_dim, true));
  SUBQ_RETURN_IF_ERROR(f.Int("num_hidden_layers", &c.n_layers, true, 1, 1 << 16));
  SUBQ_RETURN_IF_ERROR(f.Int("vocab_size", &c.vocab_size, true));
  SUBQ_RETURN_IF_ERROR(f.Int("num_attention_heads", &c.attn.n_heads, true));
  c.attn.n_kv_heads = c.attn.n_heads;
  SUBQ_RETURN_IF_ERROR(f.Int("num_key_value_heads", &c.attn.n_kv_heads));
  if (c.attn.n_heads % c.attn.n_kv_heads != 0)
    return f.Error("num_key_value_heads",
                   fmt::format("= {} does not divide num_attention_heads {}", c.attn.n_kv_heads, c.attn.n_heads));
  if (!f.Has("head_dim") && c.dim % c.attn.n_heads != 0)
    return f.Error("num_attention_heads",
                   fmt::format("= {} does not divide hidden_size {} (and head_dim is not given)", c.attn.n_heads, c.dim));
  c.attn.head_dim = c.dim / c.attn.n_heads;
  SUBQ_RETURN_IF_ERROR(f.Int("head_dim", &c.attn.head_dim));
  if (c.attn.head_dim % 2 != 0) return f.Error("head_dim", fmt::format("= {} must be even (RoPE rotates pairs)", c.attn.head_dim));
  c.norm_eps = 1e-6f;
  SUBQ_RETURN_IF_ERROR(f.Float("rms_norm_eps", &c.norm_eps));
  c.max_seq_len = 2048;
  SUBQ_RETURN_IF_ERROR(f.Int("max_position_embeddings", &c.max_seq_len));
  c.tie_embeddings = false;
  SUBQ_RETURN_IF_ERROR(f.Bool("tie_word_embeddings", &c.tie_embeddings));
  SUBQ_RETURN_IF_ERROR(f.Int("bos_token_id", &c.bos_id, false, 0, c.vocab_size - 1));
  if (f.Has("eos_token_id") && j["eos_token_id"].is_array()) {
    std::vector<int> eos;
    SUBQ_RETURN_IF_ERROR(f.IntList("eos_token_id", &eos, true, 0, c.vocab_size - 1));
    if (eos.empty()) return f.Error("eos_token_id", "is an empty list");
    c.eos_id = eos[0];
  } else {
    SUBQ_RETURN_IF_ERROR(f.Int("eos_token_id", &c.eos_id, false, 0, c.vocab_size - 1));
  }

  std::string act = "silu";
  SUBQ_RETURN_IF_ERROR(f.String("hidden_act", &act));
  if (act != "silu") return f.Error("hidden_act", fmt::format("= '{}' is not supported (Llama uses silu)", act));
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    bool b = false;
    SUBQ_RETURN_IF_ERROR(f.Bool(key, &b));
    if (b) return f.Error(key, "= true is not supported (subq's Llama has no biases)");
  }

  // RoPE: top-level rope_theta, then rope_scaling (4.x) or rope_parameters (5.x) may override it.
  c.attn.rope_theta = 10000.0f;
  c.attn.rope_interleaved = false;  // HF q/k rows are permuted for rotate-half
  SUBQ_RETURN_IF_ERROR(f.Float("rope_theta", &c.attn.rope_theta));
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const json* r = nullptr;
    SUBQ_RETURN_IF_ERROR(f.Object(key, &r));
    if (r != nullptr) SUBQ_RETURN_IF_ERROR(ParseRopeObject(*r, path, key, &c.attn));
  }
  c.layers.assign(c.n_layers, LayerConfig{});
  SUBQ_RETURN_IF_ERROR(ParseOryxFields(j, path, &c));
  *cfg = std::move(c);
  return Status::Ok();
}

}  // namespace subq
