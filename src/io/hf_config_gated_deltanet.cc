// config.json of an fla GatedDeltaNetForCausalLM (model_type "gated_deltanet") -> ModelConfig (SPEC section 5).
// Fields (fla GatedDeltaNetConfig defaults): hidden_size (2048), num_hidden_layers (21), num_heads (6),
// num_v_heads (= num_heads), head_dim (256, the key head dim), expand_v (2.0: head_v_dim = head_dim * expand_v),
// conv_size (4), norm_eps (1e-6: block norms, final norm and o_norm), intermediate_size or hidden_ratio (4:
// intermediate = 256-rounded int(hidden * ratio * 2/3), as fla's GatedMLP), hidden_act (swish), vocab_size
// (32000), tie_word_embeddings (false), bos/eos_token_id (1, 2). Options that change the forward pass must
// have the values subq implements: use_gate true, use_short_conv true, allow_neg_eigval false.
// Hybrid layers: fla's "attn" {layers, num_heads, num_kv_heads, qkv_bias (false), window_size (null),
// rope_theta} is mapped onto ParseHybridFields ("attention_layers" + "attn_cfg", also accepted directly);
// attention tensors are model.layers.{i}.attn.{q,k,v,o}_proj with rotate-half RoPE.
#include <cmath>

#include "io/hf_config.h"

namespace subq {

using nlohmann::json;

namespace {

// fla's "attn" dict -> the shared hybrid fields.
Status MapFlaAttn(const json& j, const std::string& path, json* hybrid) {
  ConfigFields f(j, path);
  const json* attn = nullptr;
  SUBQ_RETURN_IF_ERROR(f.Object("attn", &attn));
  if (attn == nullptr) return Status::Ok();
  if (hybrid->contains("attention_layers") || hybrid->contains("attn_cfg"))
    return f.Error("attn", "is given together with attention_layers/attn_cfg; use one of them");
  ConfigFields a(*attn, path, "attn.");
  std::vector<int> layers;
  SUBQ_RETURN_IF_ERROR(a.IntList("layers", &layers, true));
  int heads = 0;
  SUBQ_RETURN_IF_ERROR(a.Int("num_heads", &heads, true));
  int kv = heads;
  SUBQ_RETURN_IF_ERROR(a.Int("num_kv_heads", &kv));
  bool qkv_bias = false;
  SUBQ_RETURN_IF_ERROR(a.Bool("qkv_bias", &qkv_bias));
  if (qkv_bias) return a.Error("qkv_bias", "= true is not supported");
  if (a.Has("window_size")) return a.Error("window_size", "is set: sliding-window attention is not supported");
  float theta = 10000.0f;
  SUBQ_RETURN_IF_ERROR(a.Float("rope_theta", &theta));
  (*hybrid)["attention_layers"] = layers;
  (*hybrid)["attn_cfg"] = json{{"num_heads", heads}, {"num_key_value_heads", kv}, {"rope_theta", theta}};
  hybrid->erase("attn");
  return Status::Ok();
}

}  // namespace

Status ParseGatedDeltaNetConfig(const json& j, const std::string& path, ModelConfig* cfg) {
  if (!j.is_object()) return Errorf("{}: config is not a JSON object", path);
  ConfigFields f(j, path);
  ModelConfig c;
  c.family = "gated_deltanet";
  c.max_seq_len = 1 << 16;
  GatedDeltaNetConfig& g = c.gdn;
  c.dim = 2048, c.n_layers = 21, c.vocab_size = 32000;
  SUBQ_RETURN_IF_ERROR(f.Int("hidden_size", &c.dim));
  SUBQ_RETURN_IF_ERROR(f.Int("num_hidden_layers", &c.n_layers));
  SUBQ_RETURN_IF_ERROR(f.Int("vocab_size", &c.vocab_size));
  int head_dim = 256;
  SUBQ_RETURN_IF_ERROR(f.Int("num_heads", &g.n_qk_heads));
  if (!f.Has("num_heads")) g.n_qk_heads = 6;
  g.n_v_heads = g.n_qk_heads;
  SUBQ_RETURN_IF_ERROR(f.Int("num_v_heads", &g.n_v_heads));
  if (g.n_v_heads % g.n_qk_heads != 0)
    return f.Error("num_v_heads", fmt::format("= {} is not a multiple of num_heads {}", g.n_v_heads, g.n_qk_heads));
  SUBQ_RETURN_IF_ERROR(f.Int("head_dim", &head_dim));
  float expand_v = 2.0f;
  SUBQ_RETURN_IF_ERROR(f.Float("expand_v", &expand_v));
  const double hv = static_cast<double>(head_dim) * expand_v;
  if (hv != std::floor(hv) || hv < 1)
    return f.Error("expand_v", fmt::format("= {}: head_dim * expand_v = {} is not a positive integer", expand_v, hv));
  g.head_k_dim = head_dim, g.head_v_dim = static_cast<int>(hv);
  g.conv_kernel = 4;
  SUBQ_RETURN_IF_ERROR(f.Int("conv_size", &g.conv_kernel, false, 1, 64));
  g.chunk_size = 64;
  c.norm_eps = 1e-6f;
  SUBQ_RETURN_IF_ERROR(f.Float("norm_eps", &c.norm_eps));
  g.norm_eps = c.norm_eps;
  const std::vector<std::pair<const char*, bool>> bools = {
      {"use_gate", true}, {"use_short_conv", true}, {"allow_neg_eigval", false}};
  for (const auto& [key, want] : bools) {
    bool v = want;
    SUBQ_RETURN_IF_ERROR(f.Bool(key, &v));
    if (v != want) return f.Error(key, fmt::format("= {} is not supported", v ? "true" : "false"));
  }
  std::string act = "swish";
  SUBQ_RETURN_IF_ERROR(f.String("hidden_act", &act));
  if (act != "swish" && act != "silu") return f.Error("hidden_act", fmt::format("= '{}' is not supported", act));
  if (f.Has("intermediate_size")) {
    SUBQ_RETURN_IF_ERROR(f.Int("intermediate_size", &c.hidden_dim, true));
  } else {
    float ratio = 4.0f;
    SUBQ_RETURN_IF_ERROR(f.Float("hidden_ratio", &ratio));
    const int64_t inter = static_cast<int64_t>(c.dim * static_cast<double>(ratio) * 2.0 / 3.0);
    c.hidden_dim = static_cast<int>(256 * ((inter + 255) / 256));
  }
  c.tie_embeddings = false;
  SUBQ_RETURN_IF_ERROR(f.Bool("tie_word_embeddings", &c.tie_embeddings));
  c.bos_id = 1, c.eos_id = 2;
  SUBQ_RETURN_IF_ERROR(f.Int("bos_token_id", &c.bos_id, false, 0, c.vocab_size - 1));
  SUBQ_RETURN_IF_ERROR(f.Int("eos_token_id", &c.eos_id, false, 0, c.vocab_size - 1));
  int max_pos = 2048;  // bounds RoPE positions of hybrid attention layers only
  SUBQ_RETURN_IF_ERROR(f.Int("max_position_embeddings", &max_pos));

  json hybrid = j;
  SUBQ_RETURN_IF_ERROR(MapFlaAttn(j, path, &hybrid));
  SUBQ_RETURN_IF_ERROR(ParseHybridFields(hybrid, path, MixerKind::kGatedDeltaNet, &c));
  for (int l = 0; l < c.n_layers; ++l)
    if (!c.layers[l].attention_heads.empty())
      return Errorf(
          "{}: field 'attention_heads' names layer {}: kept attention heads are not supported in "
          "gated_deltanet layers",
          path, l);
  for (const auto& l : c.layers)
    if (l.mixer == MixerKind::kAttention) c.max_seq_len = max_pos;
  *cfg = std::move(c);
  return Status::Ok();
}

}  // namespace subq
