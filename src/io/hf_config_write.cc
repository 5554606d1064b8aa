// ModelConfig -> config.json: the inverse of ParseHfConfig (hf_config*.cc) for every family the engine
// reads, hybrids included. WriteHfConfig refuses a config the parser could not give back (a field the
// family's config.json does not carry set to something other than what the parser fills in), so
// ParseHfConfig(WriteHfConfig(c)) == c field by field (model/schema.h VisitFields; hf_config_write_test.cc).
#include <algorithm>
#include <cmath>

#include "io/hf_config.h"
#include "io/hf_write.h"
#include "model/schema.h"

namespace subq {

using nlohmann::ordered_json;

namespace {

constexpr int kNoSeqLimit = 1 << 16;  // what the SSM parsers set as max_seq_len

bool AnyAttention(const ModelConfig& c) {
  for (const auto& l : c.layers)
    if (l.mixer == MixerKind::kAttention || !l.attention_heads.empty()) return true;
  return false;
}

Status Refuse(const ModelConfig& c, const std::string& what) {
  return Errorf("cannot write config.json for family '{}': {}", c.family, what);
}

ordered_json RopeObject(const AttentionConfig& a) {
  const RopeScaling& r = a.rope_scaling;
  return {{"rope_type", "llama3"},
          {"factor", r.factor},
          {"low_freq_factor", r.low_freq_factor},
          {"high_freq_factor", r.high_freq_factor},
          {"original_max_position_embeddings", r.original_max_position_embeddings}};
}

// attention_layers / attention_heads / attn_cfg (ParseHybridFields), and the checks that every layer is
// `kind` or attention, and that an attention config is only given when some layer uses it.
Status HybridFields(const ModelConfig& c, MixerKind kind, bool heads_allowed, ordered_json* j) {
  if (static_cast<int>(c.layers.size()) != c.n_layers)
    return Refuse(c, fmt::format("{} layer entries for n_layers {}", c.layers.size(), c.n_layers));
  std::vector<int> attn_layers;
  ordered_json heads = ordered_json::object();
  for (int i = 0; i < c.n_layers; ++i) {
    const LayerConfig& l = c.layers[i];
    if (l.mixer == MixerKind::kAttention) {
      if (!l.attention_heads.empty()) return Refuse(c, fmt::format("attention layer {} lists kept heads", i));
      attn_layers.push_back(i);
    } else if (l.mixer != kind) {
      return Refuse(c, fmt::format("layer {} is {}, the family's layers are {}", i, MixerKindName(l.mixer),
                                   MixerKindName(kind)));
    } else if (!l.attention_heads.empty()) {
      if (!heads_allowed) return Refuse(c, fmt::format("layer {}: kept attention heads need {} layers", i,
                                                       MixerKindName(MixerKind::kDiscreteMamba2)));
      heads[std::to_string(i)] = l.attention_heads;
    }
  }
  const AttentionConfig& a = c.attn;
  if (!AnyAttention(c)) {
    if (a.n_heads != 0 || a.n_kv_heads != 0 || a.head_dim != 0 || a.rope_theta != AttentionConfig{}.rope_theta ||
        a.rope_interleaved || !a.rope_scaling.type.empty())
      return Refuse(c, "an attention config without attention layers or heads (config.json has no place for it)");
    return Status::Ok();
  }
  if (a.rope_interleaved) return Refuse(c, "hybrid attention with interleaved RoPE rows (subq writes rotate-half)");
  if (!attn_layers.empty()) (*j)["attention_layers"] = attn_layers;
  if (!heads.empty()) (*j)["attention_heads"] = heads;
  ordered_json ac = {{"num_heads", a.n_heads}, {"num_key_value_heads", a.n_kv_heads}, {"head_dim", a.head_dim},
                     {"rope_theta", a.rope_theta}};
  if (a.rope_scaling.type == "llama3") {
    ac["rope_scaling"] = RopeObject(a);
  } else if (!a.rope_scaling.type.empty()) {
    return Refuse(c, fmt::format("rope scaling '{}'", a.rope_scaling.type));
  }
  (*j)["attn_cfg"] = ac;
  return Status::Ok();
}

ordered_json MlpCfg(const ModelConfig& c) {
  return {{"intermediate_size", c.hidden_dim}, {"bias", false}, {"act_fn", "silu"}};
}

// Sub-configs of the other families must hold their defaults: config.json carries only the family's own.
Status CheckUnused(const ModelConfig& c) {
  auto differs = [](auto set) {
    ModelConfig a, b;
    set(&a);
    return !ConfigDiff(a, b).empty();
  };
  if (c.family != "mamba2" && differs([&](ModelConfig* x) { x->mamba2 = c.mamba2; }))
    return Refuse(c, "mamba2 fields set outside the mamba2 family");
  if (c.family != "llamba" && differs([&](ModelConfig* x) { x->dm2 = c.dm2; }))
    return Refuse(c, "discrete_mamba2 fields set outside the llamba family");
  if (c.family != "mamba3" && differs([&](ModelConfig* x) { x->mamba3 = c.mamba3; }))
    return Refuse(c, "mamba3 fields set outside the mamba3 family");
  if (c.family != "gated_deltanet" && differs([&](ModelConfig* x) { x->gdn = c.gdn; }))
    return Refuse(c, "gated_deltanet fields set outside its family");
  if (c.bf16_state) return Refuse(c, "bf16_state is a run option, not a config.json field");
  return Status::Ok();
}

Result<ordered_json> WriteLlama(const ModelConfig& c) {
  bool all_attention = static_cast<int>(c.layers.size()) == c.n_layers;
  std::vector<int> oryx_layers;  // Oryx layers: a Llama config plus oryx_cfg (io/hf_config_oryx.cc)
  for (int l = 0; l < static_cast<int>(c.layers.size()); ++l) {
    const auto& L = c.layers[l];
    if (L.mixer == MixerKind::kOryx && L.attention_heads.empty()) oryx_layers.push_back(l);
    else all_attention &= L.mixer == MixerKind::kAttention && L.attention_heads.empty();
  }
  if (!all_attention) return Refuse(c, "a llama config has attention (or oryx) layers only");
  if (c.attn.rope_interleaved) return Refuse(c, "interleaved q/k rows (HF Llama is rotate-half: convert the rows)");
  if (c.attn.head_dim % 2 != 0) return Refuse(c, "odd head_dim");
  ordered_json j = LlamaConfigJson(c);
  if (!oryx_layers.empty()) {
    j["oryx_cfg"] = {{"recurrence", c.oryx.recurrence}, {"default_mode", c.oryx.default_mode},
                     {"chunk_size", c.oryx.chunk_size}};
    if (static_cast<int>(oryx_layers.size()) != c.n_layers) j["oryx_cfg"]["layers"] = oryx_layers;
  } else if (c.oryx.recurrence != OryxConfig{}.recurrence || c.oryx.default_mode != OryxConfig{}.default_mode ||
             c.oryx.chunk_size != OryxConfig{}.chunk_size) {
    return Refuse(c, "oryx fields set without oryx layers");
  }
  return j;
}

Result<ordered_json> WriteMamba2(const ModelConfig& c) {
  const Mamba2Config& m = c.mamba2;
  if (c.max_seq_len != kNoSeqLimit) return Refuse(c, fmt::format("max_seq_len {} (the parser sets {})", c.max_seq_len, kNoSeqLimit));
  if (m.norm_eps != c.norm_eps) return Refuse(c, "gated norm eps differs from layer_norm_epsilon");
  if (!m.norm_grouped) return Refuse(c, "ungrouped gated norm");
  SUBQ_ASSIGN_OR_RETURN(ordered_json j, Mamba2ConfigJson(c, /*conv_bias=*/true, "config.json"));
  j.erase("use_conv_bias");  // the engine reads the conv bias from the tensors
  if (c.hidden_dim > 0) j["mlp_cfg"] = MlpCfg(c);
  SUBQ_RETURN_IF_ERROR(HybridFields(c, MixerKind::kMamba2, false, &j));
  return j;
}

Result<ordered_json> WriteLlamba(const ModelConfig& c) {
  const DiscreteMamba2Config& m = c.dm2;
  if (c.max_seq_len != kNoSeqLimit) return Refuse(c, fmt::format("max_seq_len {} (the parser sets {})", c.max_seq_len, kNoSeqLimit));
  if (c.hidden_dim <= 0) return Refuse(c, "Llamba blocks have an MLP");
  if (m.n_v_heads <= 0 || m.d_inner() % c.dim != 0)
    return Refuse(c, fmt::format("d_inner {} is not a multiple of d_model {}", m.d_inner(), c.dim));
  ordered_json j = {{"model_type", "llamba"},
                    {"architectures", {"LlambaForCausalLM"}},
                    {"d_model", c.dim},
                    {"n_layer", c.n_layers},
                    {"vocab_size", c.vocab_size},
                    {"pad_vocab_size_multiple", 1},
                    {"tie_embeddings", c.tie_embeddings},
                    {"lm_head_bias", false},
                    {"norm_epsilon", c.norm_eps},
                    {"ssm_cfg", {{"d_state", m.d_state}, {"n_qk_heads", m.n_qk_heads}, {"n_v_heads", m.n_v_heads},
                                 {"d_conv", m.conv_kernel}, {"expand", m.d_inner() / c.dim},
                                 {"chunk_size", m.chunk_size}, {"activation", "identity"}, {"bias", false},
                                 {"conv_bias", m.conv_bias}}},
                    {"mlp_cfg", MlpCfg(c)},
                    {"bos_token_id", c.bos_id},
                    {"eos_token_id", c.eos_id}};
  SUBQ_RETURN_IF_ERROR(HybridFields(c, MixerKind::kDiscreteMamba2, true, &j));
  return j;
}

Result<ordered_json> WriteMamba3(const ModelConfig& c) {
  const Mamba3Config& m = c.mamba3;
  if (c.max_seq_len != kNoSeqLimit) return Refuse(c, fmt::format("max_seq_len {} (the parser sets {})", c.max_seq_len, kNoSeqLimit));
  const double expand = static_cast<double>(m.d_inner()) / c.dim;
  if (static_cast<float>(expand) * c.dim != static_cast<float>(m.d_inner()))
    return Refuse(c, fmt::format("d_inner {} / d_model {} is not exact as a float expand", m.d_inner(), c.dim));
  ordered_json ssm = {{"layer", "Mamba3"},       {"d_state", m.state_size},          {"expand", expand},
                      {"headdim", m.head_dim},   {"ngroups", m.n_groups},            {"rope_fraction", m.rope_fraction},
                      {"is_mimo", m.mimo_rank != 1}, {"chunk_size", m.chunk_size}, {"is_outproj_norm", m.output_norm}};
  if (m.mimo_rank != 1) ssm["mimo_rank"] = m.mimo_rank;
  ordered_json j = {{"model_type", "mamba3"},
                    {"d_model", c.dim},
                    {"d_intermediate", 0},
                    {"n_layer", c.n_layers},
                    {"vocab_size", c.vocab_size},
                    {"pad_vocab_size_multiple", 1},
                    {"tie_embeddings", c.tie_embeddings},
                    {"norm_epsilon", c.norm_eps},
                    {"rms_norm", true},
                    {"ssm_cfg", ssm},
                    {"bos_token_id", c.bos_id},
                    {"eos_token_id", c.eos_id}};
  if (c.hidden_dim > 0) j["mlp_cfg"] = MlpCfg(c);
  SUBQ_RETURN_IF_ERROR(HybridFields(c, MixerKind::kMamba3, false, &j));
  return j;
}

Result<ordered_json> WriteGatedDeltaNet(const ModelConfig& c) {
  const GatedDeltaNetConfig& g = c.gdn;
  const int seq = AnyAttention(c) ? c.max_seq_len : kNoSeqLimit;
  if (c.max_seq_len != seq) return Refuse(c, fmt::format("max_seq_len {} without attention layers (the parser sets {})", c.max_seq_len, seq));
  if (g.chunk_size != 64) return Refuse(c, "chunk_size other than 64 (fla's config has no field for it)");
  if (g.norm_eps != c.norm_eps) return Refuse(c, "o_norm eps differs from norm_eps");
  if (g.head_k_dim <= 0) return Refuse(c, "head_k_dim must be positive");
  const float expand_v = static_cast<float>(static_cast<double>(g.head_v_dim) / g.head_k_dim);
  if (static_cast<double>(g.head_k_dim) * expand_v != g.head_v_dim)
    return Refuse(c, fmt::format("head_v_dim {} / head_dim {} is not exact as a float expand_v", g.head_v_dim, g.head_k_dim));
  ordered_json j = {{"model_type", "gated_deltanet"},
                    {"architectures", {"GatedDeltaNetForCausalLM"}},
                    {"hidden_size", c.dim},
                    {"num_hidden_layers", c.n_layers},
                    {"vocab_size", c.vocab_size},
                    {"num_heads", g.n_qk_heads},
                    {"num_v_heads", g.n_v_heads},
                    {"head_dim", g.head_k_dim},
                    {"expand_v", expand_v},
                    {"conv_size", g.conv_kernel},
                    {"norm_eps", c.norm_eps},
                    {"intermediate_size", c.hidden_dim},
                    {"hidden_act", "swish"},
                    {"use_gate", true},
                    {"use_short_conv", true},
                    {"allow_neg_eigval", false},
                    {"tie_word_embeddings", c.tie_embeddings},
                    {"bos_token_id", c.bos_id},
                    {"eos_token_id", c.eos_id}};
  if (AnyAttention(c)) j["max_position_embeddings"] = c.max_seq_len;
  SUBQ_RETURN_IF_ERROR(HybridFields(c, MixerKind::kGatedDeltaNet, false, &j));
  return j;
}

}  // namespace

Result<ordered_json> WriteHfConfig(const ModelConfig& c) {
  if (c.dim <= 0 || c.n_layers <= 0 || c.vocab_size <= 0)
    return Refuse(c, fmt::format("dim {}, n_layers {}, vocab_size {} must be positive", c.dim, c.n_layers, c.vocab_size));
  SUBQ_RETURN_IF_ERROR(CheckUnused(c));
  Result<ordered_json> j = Errorf("unknown model family '{}'", c.family);
  if (c.family == "llama") j = WriteLlama(c);
  if (c.family == "mamba2") j = WriteMamba2(c);
  if (c.family == "llamba") j = WriteLlamba(c);
  if (c.family == "mamba3") j = WriteMamba3(c);
  if (c.family == "gated_deltanet") j = WriteGatedDeltaNet(c);
  if (j.ok()) (*j)["torch_dtype"] = "float32";
  return j;
}

}  // namespace subq
