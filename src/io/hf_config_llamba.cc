// config.json of a Llamba model (cartesia-ai Llamba, MOHAWK students) -> ModelConfig (SPEC section 3):
// d_model, n_layer, vocab_size (padded to pad_vocab_size_multiple), tie_embeddings, lm_head_bias (must be
// false), norm_epsilon, ssm_cfg {d_state, n_qk_heads, n_v_heads, d_conv, expand, chunk_size, activation
// ("identity"), bias (false), conv_bias, d_inner, layer}, mlp_cfg {intermediate_size, bias (false), act_fn
// (silu)}. The HF-compatibility aliases hidden_size / num_hidden_layers / num_attention_heads /
// rms_norm_eps that LlambaConfig writes must agree with them. Blocks: x += mixer(RMSNorm(x));
// x += SwiGLU(RMSNorm(x)). Hybrid layers and kept attention heads come from ParseHybridFields.
#include <set>

#include "io/hf_config.h"

namespace subq {

using nlohmann::json;

namespace {

const std::set<std::string> kSsmCfgKeys = {"layer", "d_state", "n_qk_heads", "n_v_heads", "d_conv", "expand",
                                           "chunk_size", "activation", "bias", "conv_bias", "d_inner"};

// An alias (e.g. hidden_size) that, when present, must equal the value already read.
Status CheckAlias(const ConfigFields& f, const std::string& key, int value, const std::string& of) {
  int v = value;
  SUBQ_RETURN_IF_ERROR(f.Int(key, &v, false, 0));
  if (v != value) return f.Error(key, fmt::format("= {} disagrees with {} = {}", v, of, value));
  return Status::Ok();
}

Status ParseSsmCfg(const json& ssm, const std::string& path, int dim, int default_heads, DiscreteMamba2Config* d) {
  ConfigFields s(ssm, path, "ssm_cfg.");
  for (const auto& [key, v] : ssm.items())
    if (!kSsmCfgKeys.count(key)) return s.Error(key, "is not a known Discrete Mamba-2 option");
  std::string layer = "DiscreteMamba2";
  SUBQ_RETURN_IF_ERROR(s.String("layer", &layer));
  if (layer != "DiscreteMamba2")
    return s.Error("layer", fmt::format("= '{}' is not supported here (llamba layers are DiscreteMamba2)", layer));
  d->d_state = 64, d->n_v_heads = default_heads, d->conv_kernel = 4, d->chunk_size = 128, d->conv_bias = true;
  int expand = 1;
  SUBQ_RETURN_IF_ERROR(s.Int("d_state", &d->d_state));
  SUBQ_RETURN_IF_ERROR(s.Int("n_v_heads", &d->n_v_heads));
  d->n_qk_heads = d->n_v_heads;
  SUBQ_RETURN_IF_ERROR(s.Int("n_qk_heads", &d->n_qk_heads));
  SUBQ_RETURN_IF_ERROR(s.Int("d_conv", &d->conv_kernel, false, 1, 64));
  SUBQ_RETURN_IF_ERROR(s.Int("expand", &expand));
  SUBQ_RETURN_IF_ERROR(s.Int("chunk_size", &d->chunk_size));
  SUBQ_RETURN_IF_ERROR(s.Bool("conv_bias", &d->conv_bias));
  std::string act = "identity";
  SUBQ_RETURN_IF_ERROR(s.String("activation", &act));
  if (act != "identity")
    return s.Error("activation", fmt::format("= '{}' is not supported (Discrete Mamba-2 uses identity)", act));
  bool bias = false;
  SUBQ_RETURN_IF_ERROR(s.Bool("bias", &bias));
  if (bias) return s.Error("bias", "= true is not supported (in_proj/out_proj without bias only)");
  int64_t d_inner = int64_t{expand} * dim;
  if (s.Has("d_inner")) {
    int given = 0;
    SUBQ_RETURN_IF_ERROR(s.Int("d_inner", &given));
    if (given != d_inner) return s.Error("d_inner", fmt::format("= {} != expand * d_model = {}", given, d_inner));
  }
  if (d_inner % d->n_v_heads != 0)
    return s.Error("n_v_heads", fmt::format("= {} does not divide d_inner = expand * d_model = {}", d->n_v_heads, d_inner));
  if (d->n_v_heads % d->n_qk_heads != 0)
    return s.Error("n_qk_heads", fmt::format("= {} does not divide n_v_heads = {}", d->n_qk_heads, d->n_v_heads));
  d->head_dim = static_cast<int>(d_inner / d->n_v_heads);
  return Status::Ok();
}

}  // namespace

Status ParseLlambaConfig(const json& j, const std::string& path, ModelConfig* cfg) {
  ConfigFields f(j, path);
  ModelConfig c;
  c.family = "llamba";
  c.max_seq_len = 1 << 16;  // no positional limit of its own
  const char* dim_key = f.Has("d_model") ? "d_model" : "hidden_size";
  const char* layers_key = f.Has("n_layer") ? "n_layer" : "num_hidden_layers";
  SUBQ_RETURN_IF_ERROR(f.Int(dim_key, &c.dim, true));
  SUBQ_RETURN_IF_ERROR(f.Int(layers_key, &c.n_layers, true));
  SUBQ_RETURN_IF_ERROR(CheckAlias(f, "hidden_size", c.dim, dim_key));
  SUBQ_RETURN_IF_ERROR(CheckAlias(f, "num_hidden_layers", c.n_layers, layers_key));
  SUBQ_RETURN_IF_ERROR(f.Int("vocab_size", &c.vocab_size, true));
  int pad = 8;
  SUBQ_RETURN_IF_ERROR(f.Int("pad_vocab_size_multiple", &pad));
  if (c.vocab_size % pad != 0) c.vocab_size += pad - c.vocab_size % pad;  // as the Llamba LM head does
  c.tie_embeddings = false;
  SUBQ_RETURN_IF_ERROR(f.Bool("tie_embeddings", &c.tie_embeddings));
  bool lm_head_bias = false;
  SUBQ_RETURN_IF_ERROR(f.Bool("lm_head_bias", &lm_head_bias));
  if (lm_head_bias) return f.Error("lm_head_bias", "= true is not supported");
  std::string prenorm = "rms";
  SUBQ_RETURN_IF_ERROR(f.String("lm_head_prenorm", &prenorm));
  if (prenorm != "rms") return f.Error("lm_head_prenorm", fmt::format("= '{}' is not supported (rms only)", prenorm));
  c.norm_eps = 1e-5f;
  SUBQ_RETURN_IF_ERROR(f.Float("rms_norm_eps", &c.norm_eps));
  SUBQ_RETURN_IF_ERROR(f.Float("norm_epsilon", &c.norm_eps));
  SUBQ_RETURN_IF_ERROR(f.Int("bos_token_id", &c.bos_id, false, 0, c.vocab_size - 1));
  SUBQ_RETURN_IF_ERROR(f.Int("eos_token_id", &c.eos_id, false, 0, c.vocab_size - 1));

  int heads = 32;
  SUBQ_RETURN_IF_ERROR(f.Int("num_attention_heads", &heads));
  const json* ssm = nullptr;
  SUBQ_RETURN_IF_ERROR(f.Object("ssm_cfg", &ssm));
  if (ssm == nullptr) return f.Error("ssm_cfg", "is missing");
  SUBQ_RETURN_IF_ERROR(ParseSsmCfg(*ssm, path, c.dim, heads, &c.dm2));
  if (f.Has("num_attention_heads") && heads != c.dm2.n_v_heads)
    return f.Error("num_attention_heads", fmt::format("= {} disagrees with ssm_cfg.n_v_heads = {}", heads, c.dm2.n_v_heads));

  const json* mlp = nullptr;
  SUBQ_RETURN_IF_ERROR(f.Object("mlp_cfg", &mlp));
  if (mlp == nullptr) return f.Error("mlp_cfg", "is missing");
  ConfigFields m(*mlp, path, "mlp_cfg.");
  SUBQ_RETURN_IF_ERROR(m.Int("intermediate_size", &c.hidden_dim, true));
  bool mlp_bias = false;
  SUBQ_RETURN_IF_ERROR(m.Bool("bias", &mlp_bias));
  if (mlp_bias) return m.Error("bias", "= true is not supported");
  std::string act = "silu";
  SUBQ_RETURN_IF_ERROR(m.String("act_fn", &act));
  if (act != "silu" && act != "swish") return m.Error("act_fn", fmt::format("= '{}' is not supported (SwiGLU)", act));

  SUBQ_RETURN_IF_ERROR(ParseHybridFields(j, path, MixerKind::kDiscreteMamba2, &c));
  for (int l = 0; l < c.n_layers; ++l) {
    for (int h : c.layers[l].attention_heads)
      if (h >= c.dm2.n_v_heads)
        return Errorf("{}: field 'attention_heads.{}' lists head {} but layers have {} heads", path, l, h, c.dm2.n_v_heads);
    if (!c.layers[l].attention_heads.empty() && c.attn.head_dim != c.dm2.head_dim)
      return Errorf("{}: kept attention heads of layer {} need attn_cfg.head_dim = the SSM head dim {} (got {})", path,
                    l, c.dm2.head_dim, c.attn.head_dim);
  }
  *cfg = std::move(c);
  return Status::Ok();
}

}  // namespace subq
