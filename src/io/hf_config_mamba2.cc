// config.json of a Mamba-2 model -> ModelConfig (SPEC section 2). Two origins:
//  - transformers Mamba2ForCausalLM (model_type "mamba2"): num_heads, head_dim, state_size, n_groups,
//    conv_kernel, expand, chunk_size, hidden_size, num_hidden_layers, layer_norm_epsilon, vocab_size,
//    tie_word_embeddings, use_conv_bias, use_bias (must be false), hidden_act (silu), time_step_limit
//    (must be the default (0, inf)). Defaults are transformers' Mamba2Config defaults.
//  - mamba_ssm MambaLMHeadModel: {d_model, n_layer, vocab_size, pad_vocab_size_multiple, tie_embeddings,
//    ssm_cfg {layer "Mamba2", d_state, headdim, ngroups, d_conv, expand, chunk_size, ...}}; the vocabulary is
//    padded to pad_vocab_size_multiple as MambaLMHeadModel does; embedding key "backbone.embedding.weight".
// Gated norm: grouped for both (mamba_ssm always; transformers 5.x too, see mixers/mamba2.h).
// Blocks have no MLP (hidden_dim 0) unless subq's "mlp_cfg" gives one (distilled students). Hybrid layers come from ParseHybridFields.
#include <cmath>
#include <set>

#include "io/hf_config.h"

namespace subq {

using nlohmann::json;

namespace {

constexpr int kNoSeqLimit = 1 << 16;  // SSMs have no positional limit; a generous default for apps

// time_step_limit must be (0, inf): transformers writes [0.0, {"__float__": "Infinity"}].
Status CheckTimeStepLimit(const json& j, const std::string& path, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  auto is_inf = [](const json& v) {
    if (v.is_number()) return v.get<double>() >= 1e30;
    if (v.is_string()) return v.get<std::string>() == "Infinity" || v.get<std::string>() == "inf";
    if (v.is_object()) {
      auto f = v.find("__float__");
      return f != v.end() && f->is_string() && f->get<std::string>() == "Infinity";
    }
    return false;
  };
  if (it->is_array() && it->size() == 2 && (*it)[0].is_number() && (*it)[0].get<double>() <= 0.0 && is_inf((*it)[1]))
    return Status::Ok();
  return Errorf("{}: field '{}' = {} is not supported (only the default (0, inf), i.e. no dt clamping)", path, key,
                it->dump());
}

Status CheckMamba2Dims(const ConfigFields& f, const std::string& heads_key, const ModelConfig& c, int expand) {
  const Mamba2Config& m = c.mamba2;
  const int64_t d_inner = int64_t{expand} * c.dim;
  if (d_inner != int64_t{m.n_heads} * m.head_dim)
    return f.Error(heads_key, fmt::format("= {}: expand * hidden size = {} * {} = {} must equal heads * head_dim = {} * {}",
                                          m.n_heads, expand, c.dim, d_inner, m.n_heads, m.head_dim));
  if (m.n_heads % m.n_groups != 0)
    return f.Error(heads_key, fmt::format("= {} is not a multiple of the number of groups {}", m.n_heads, m.n_groups));
  return Status::Ok();
}

Status ParseTransformersMamba2(const json& j, const std::string& path, ModelConfig* c) {
  ConfigFields f(j, path);
  Mamba2Config& m = c->mamba2;
  SUBQ_RETURN_IF_ERROR(f.Int("hidden_size", &c->dim, true));
  SUBQ_RETURN_IF_ERROR(f.Int("num_hidden_layers", &c->n_layers, true));
  SUBQ_RETURN_IF_ERROR(f.Int("vocab_size", &c->vocab_size, true));
  SUBQ_RETURN_IF_ERROR(f.Int("num_heads", &m.n_heads, true));
  m.head_dim = 64, m.state_size = 128, m.n_groups = 8, m.conv_kernel = 4, m.chunk_size = 256;
  int expand = 2;
  SUBQ_RETURN_IF_ERROR(f.Int("head_dim", &m.head_dim));
  SUBQ_RETURN_IF_ERROR(f.Int("state_size", &m.state_size));
  SUBQ_RETURN_IF_ERROR(f.Int("n_groups", &m.n_groups));
  SUBQ_RETURN_IF_ERROR(f.Int("conv_kernel", &m.conv_kernel, false, 1, 64));
  SUBQ_RETURN_IF_ERROR(f.Int("expand", &expand));
  SUBQ_RETURN_IF_ERROR(f.Int("chunk_size", &m.chunk_size));
  c->norm_eps = 1e-5f;
  SUBQ_RETURN_IF_ERROR(f.Float("layer_norm_epsilon", &c->norm_eps));
  m.norm_eps = c->norm_eps;  // transformers' gated norm uses layer_norm_epsilon too
  m.norm_grouped = true;
  c->tie_embeddings = false;
  SUBQ_RETURN_IF_ERROR(f.Bool("tie_word_embeddings", &c->tie_embeddings));
  bool use_bias = false;
  SUBQ_RETURN_IF_ERROR(f.Bool("use_bias", &use_bias));
  if (use_bias) return f.Error("use_bias", "= true is not supported (in_proj/out_proj without bias only)");
  std::string act = "silu";
  SUBQ_RETURN_IF_ERROR(f.String("hidden_act", &act));
  if (act != "silu") return f.Error("hidden_act", fmt::format("= '{}' is not supported (Mamba-2 uses silu)", act));
  SUBQ_RETURN_IF_ERROR(CheckTimeStepLimit(j, path, "time_step_limit"));
  c->bos_id = 0, c->eos_id = 2;
  SUBQ_RETURN_IF_ERROR(f.Int("bos_token_id", &c->bos_id, false, 0, c->vocab_size - 1));
  SUBQ_RETURN_IF_ERROR(f.Int("eos_token_id", &c->eos_id, false, 0, c->vocab_size - 1));
  return CheckMamba2Dims(f, "num_heads", *c, expand);
}

// Keys of mamba_ssm's Mamba2 ssm_cfg: those that change the forward pass are checked; init-only
// and kernel-selection keys are accepted and ignored.
const std::set<std::string> kSsmCfgKeys = {
    "layer", "d_state", "d_conv", "conv_init", "expand", "headdim", "d_ssm", "ngroups", "A_init_range",
    "D_has_hdim", "rmsnorm", "norm_before_gate", "dt_min", "dt_max", "dt_init_floor", "dt_limit", "bias",
    "conv_bias", "chunk_size", "use_mem_eff_path", "learnable_init_states", "activation", "process_group",
    "sequence_parallel"};

Status ParseMambaSsmMamba2(const json& j, const std::string& path, ModelConfig* c) {
  ConfigFields f(j, path);
  Mamba2Config& m = c->mamba2;
  SUBQ_RETURN_IF_ERROR(f.Int("d_model", &c->dim, true));
  SUBQ_RETURN_IF_ERROR(f.Int("n_layer", &c->n_layers, true));
  SUBQ_RETURN_IF_ERROR(f.Int("vocab_size", &c->vocab_size, true));
  int pad = 8;
  SUBQ_RETURN_IF_ERROR(f.Int("pad_vocab_size_multiple", &pad));
  if (c->vocab_size % pad != 0) c->vocab_size += pad - c->vocab_size % pad;  // as MambaLMHeadModel
  c->tie_embeddings = true;
  SUBQ_RETURN_IF_ERROR(f.Bool("tie_embeddings", &c->tie_embeddings));
  int d_intermediate = 0;
  SUBQ_RETURN_IF_ERROR(f.Int("d_intermediate", &d_intermediate, false, 0));
  if (d_intermediate != 0)
    return f.Error("d_intermediate", fmt::format("= {}: mamba_ssm blocks with an MLP are not supported", d_intermediate));
  bool rms_norm = true;
  SUBQ_RETURN_IF_ERROR(f.Bool("rms_norm", &rms_norm));
  if (!rms_norm) return f.Error("rms_norm", "= false (LayerNorm blocks) is not supported");
  std::vector<int> attn_idx;
  SUBQ_RETURN_IF_ERROR(f.IntList("attn_layer_idx", &attn_idx));
  if (!attn_idx.empty())
    return f.Error("attn_layer_idx", "is not empty: mamba_ssm attention layers (MHA with fused in_proj) are not supported");
  c->norm_eps = 1e-5f;
  SUBQ_RETURN_IF_ERROR(f.Float("norm_epsilon", &c->norm_eps));

  const json* ssm = nullptr;
  SUBQ_RETURN_IF_ERROR(f.Object("ssm_cfg", &ssm));
  ConfigFields s(*ssm, path, "ssm_cfg.");
  for (const auto& [key, v] : ssm->items())
    if (!kSsmCfgKeys.count(key)) return s.Error(key, "is not a known mamba_ssm Mamba2 option");
  m.head_dim = 64, m.state_size = 128, m.n_groups = 1, m.conv_kernel = 4, m.chunk_size = 256;
  int expand = 2;
  SUBQ_RETURN_IF_ERROR(s.Int("d_state", &m.state_size));
  SUBQ_RETURN_IF_ERROR(s.Int("headdim", &m.head_dim));
  SUBQ_RETURN_IF_ERROR(s.Int("ngroups", &m.n_groups));
  SUBQ_RETURN_IF_ERROR(s.Int("d_conv", &m.conv_kernel, false, 1, 64));
  SUBQ_RETURN_IF_ERROR(s.Int("expand", &expand));
  SUBQ_RETURN_IF_ERROR(s.Int("chunk_size", &m.chunk_size));
  const int64_t d_inner = int64_t{expand} * c->dim;
  if (d_inner % m.head_dim != 0)
    return s.Error("headdim", fmt::format("= {} does not divide d_inner = expand * d_model = {}", m.head_dim, d_inner));
  m.n_heads = static_cast<int>(d_inner / m.head_dim);
  int d_ssm = static_cast<int>(d_inner);
  SUBQ_RETURN_IF_ERROR(s.Int("d_ssm", &d_ssm));
  if (d_ssm != d_inner) return s.Error("d_ssm", fmt::format("= {} != d_inner {} is not supported", d_ssm, d_inner));
  // Options that change the forward pass must have the values subq implements.
  const std::vector<std::pair<const char*, bool>> bools = {
      {"rmsnorm", true}, {"norm_before_gate", false}, {"D_has_hdim", false}, {"bias", false},
      {"learnable_init_states", false}};
  for (const auto& [key, want] : bools) {
    bool v = want;
    SUBQ_RETURN_IF_ERROR(s.Bool(key, &v));
    if (v != want) return s.Error(key, fmt::format("= {} is not supported", v ? "true" : "false"));
  }
  std::string act = "silu";
  SUBQ_RETURN_IF_ERROR(s.String("activation", &act));
  if (act != "silu" && act != "swish") return s.Error("activation", fmt::format("= '{}' is not supported", act));
  SUBQ_RETURN_IF_ERROR(CheckTimeStepLimit(*ssm, path, "dt_limit"));
  m.norm_eps = 1e-5f;  // mamba_ssm's RMSNormGated eps
  m.norm_grouped = true;
  c->bos_id = 0, c->eos_id = 0;  // GPT-NeoX tokenizer: <|endoftext|> = 0
  return CheckMamba2Dims(s, "headdim", *c, expand);
}

}  // namespace

Status ParseMamba2Config(const json& j, const std::string& path, ModelConfig* cfg) {
  ModelConfig c;
  c.family = "mamba2";
  c.hidden_dim = 0;  // Mamba-2 blocks have no MLP
  c.max_seq_len = kNoSeqLimit;
  json hybrid = j;
  const bool mamba_ssm = j.contains("ssm_cfg") && !j.contains("num_heads");
  if (mamba_ssm) {
    SUBQ_RETURN_IF_ERROR(ParseMambaSsmMamba2(j, path, &c));
    if (auto a = hybrid.find("attn_cfg"); a != hybrid.end() && a->is_object()) {
      if (!a->empty()) return Errorf("{}: field 'attn_cfg' is not empty: mamba_ssm attention layers are not supported", path);
      hybrid.erase("attn_cfg");  // mamba_ssm writes "attn_cfg": {} for pure models
    }
  } else {
    SUBQ_RETURN_IF_ERROR(ParseTransformersMamba2(j, path, &c));
  }
  SUBQ_RETURN_IF_ERROR(ParseMlpCfg(j, path, &c));
  SUBQ_RETURN_IF_ERROR(ParseHybridFields(hybrid, path, MixerKind::kMamba2, &c));
  for (int l = 0; l < c.n_layers; ++l)
    if (!c.layers[l].attention_heads.empty())
      return Errorf("{}: field 'attention_heads' names layer {}: kept attention heads are supported in "
                    "discrete_mamba2 (llamba) layers only",
                    path, l);
  *cfg = std::move(c);
  return Status::Ok();
}

}  // namespace subq
