// config.json of a Mamba-3 model (mamba_ssm MambaLMHeadModel with ssm_cfg.layer "Mamba3") -> ModelConfig
// (SPEC section 4). Fields: d_model, n_layer, vocab_size, pad_vocab_size_multiple, tie_embeddings,
// norm_epsilon, rms_norm (must be true), d_intermediate (must be 0: blocks have no MLP), and
// ssm_cfg {layer "Mamba3", d_state (128), expand (2), headdim (64), ngroups (1), rope_fraction (0.5 or 1.0),
// is_mimo (false), mimo_rank (4, used when is_mimo), chunk_size (64), is_outproj_norm (false),
// A_floor (1e-4 only), dt_min/dt_max/dt_init_floor (init only)}. Defaults are those of the Mamba3 module.
// Unknown keys are errors. Hybrid layers: "attention_layers" + "attn_cfg" via ParseHybridFields (attention
// tensors under backbone.layers.{i}.mixer.{q,k,v,o}_proj); mamba_ssm's own MHA layers (attn_layer_idx)
// are not supported.
#include <cmath>
#include <set>

#include "io/hf_config.h"

namespace subq {

using nlohmann::json;

namespace {

const std::set<std::string> kTopKeys = {"model_type",
                                        "architectures",
                                        "torch_dtype",
                                        "transformers_version",
                                        "d_model",
                                        "d_intermediate",
                                        "n_layer",
                                        "vocab_size",
                                        "ssm_cfg",
                                        "attn_layer_idx",
                                        "attn_cfg",
                                        "rms_norm",
                                        "residual_in_fp32",
                                        "fused_add_norm",
                                        "pad_vocab_size_multiple",
                                        "tie_embeddings",
                                        "norm_epsilon",
                                        "bos_token_id",
                                        "eos_token_id",
                                        "pad_token_id",
                                        "attention_layers",
                                        "attention_heads",
                                        "initializer_cfg",
                                        "mlp_cfg",
                                        "quantization"};  // io/quantized.h
const std::set<std::string> kSsmKeys = {"layer",           "d_state", "expand",    "headdim",       "ngroups",
                                        "rope_fraction",   "dt_min",  "dt_max",    "dt_init_floor", "A_floor",
                                        "is_outproj_norm", "is_mimo", "mimo_rank", "chunk_size",    "dropout"};

}  // namespace

Status ParseMamba3Config(const json& j, const std::string& path, ModelConfig* cfg) {
  if (!j.is_object()) return Errorf("{}: config is not a JSON object", path);
  ConfigFields f(j, path);
  for (const auto& [key, v] : j.items())
    if (!kTopKeys.count(key)) return f.Error(key, "is not a known Mamba-3 (mamba_ssm) config field");
  ModelConfig c;
  c.family = "mamba3";
  c.hidden_dim = 0;
  c.max_seq_len = 1 << 16;  // no positional limit
  SUBQ_RETURN_IF_ERROR(f.Int("d_model", &c.dim, true));
  SUBQ_RETURN_IF_ERROR(f.Int("n_layer", &c.n_layers, true));
  SUBQ_RETURN_IF_ERROR(f.Int("vocab_size", &c.vocab_size, true));
  int pad = 8;
  SUBQ_RETURN_IF_ERROR(f.Int("pad_vocab_size_multiple", &pad));
  if (c.vocab_size % pad != 0) c.vocab_size += pad - c.vocab_size % pad;  // as MambaLMHeadModel
  c.tie_embeddings = true;
  SUBQ_RETURN_IF_ERROR(f.Bool("tie_embeddings", &c.tie_embeddings));
  c.norm_eps = 1e-5f;
  SUBQ_RETURN_IF_ERROR(f.Float("norm_epsilon", &c.norm_eps));
  int d_intermediate = 0;
  SUBQ_RETURN_IF_ERROR(f.Int("d_intermediate", &d_intermediate, false, 0));
  if (d_intermediate != 0)
    return f.Error("d_intermediate", fmt::format("= {}: Mamba-3 blocks with an MLP are not supported", d_intermediate));
  SUBQ_RETURN_IF_ERROR(ParseMlpCfg(j, path, &c));  // subq students keep the teacher's SwiGLU MLP
  bool rms_norm = true;
  SUBQ_RETURN_IF_ERROR(f.Bool("rms_norm", &rms_norm));
  if (!rms_norm) return f.Error("rms_norm", "= false (LayerNorm blocks) is not supported");
  std::vector<int> attn_idx;
  SUBQ_RETURN_IF_ERROR(f.IntList("attn_layer_idx", &attn_idx));
  if (!attn_idx.empty())
    return f.Error("attn_layer_idx", "is not empty: mamba_ssm MHA layers are not supported (use attention_layers)");
  c.bos_id = 0, c.eos_id = 0;
  SUBQ_RETURN_IF_ERROR(f.Int("bos_token_id", &c.bos_id, false, 0, c.vocab_size - 1));
  SUBQ_RETURN_IF_ERROR(f.Int("eos_token_id", &c.eos_id, false, 0, c.vocab_size - 1));

  const json* ssm = nullptr;
  SUBQ_RETURN_IF_ERROR(f.Object("ssm_cfg", &ssm));
  if (ssm == nullptr) return f.Error("ssm_cfg", "is missing");
  ConfigFields s(*ssm, path, "ssm_cfg.");
  for (const auto& [key, v] : ssm->items())
    if (!kSsmKeys.count(key)) return s.Error(key, "is not a known mamba_ssm Mamba3 option");
  std::string layer;
  SUBQ_RETURN_IF_ERROR(s.String("layer", &layer, true));
  if (layer != "Mamba3") return s.Error("layer", fmt::format("= '{}' (expected 'Mamba3')", layer));
  Mamba3Config& m = c.mamba3;
  m.state_size = 128, m.head_dim = 64, m.n_groups = 1, m.chunk_size = 64, m.rope_fraction = 0.5f;
  float expand = 2.0f;
  SUBQ_RETURN_IF_ERROR(s.Int("d_state", &m.state_size, false, 2, 4096));
  SUBQ_RETURN_IF_ERROR(s.Float("expand", &expand));
  SUBQ_RETURN_IF_ERROR(s.Int("headdim", &m.head_dim));
  SUBQ_RETURN_IF_ERROR(s.Int("ngroups", &m.n_groups));
  SUBQ_RETURN_IF_ERROR(s.Int("chunk_size", &m.chunk_size));
  SUBQ_RETURN_IF_ERROR(s.Float("rope_fraction", &m.rope_fraction));
  if (m.rope_fraction != 0.5f && m.rope_fraction != 1.0f)
    return s.Error("rope_fraction", fmt::format("= {} is not supported (0.5 or 1.0)", m.rope_fraction));
  if (m.state_size % 2 != 0) return s.Error("d_state", fmt::format("= {} must be even", m.state_size));
  if (m.n_angles() < 1) return s.Error("d_state", fmt::format("= {} gives no rotary angle", m.state_size));
  bool is_mimo = false;
  SUBQ_RETURN_IF_ERROR(s.Bool("is_mimo", &is_mimo));
  m.mimo_rank = 1;
  if (is_mimo) {
    m.mimo_rank = 4;
    SUBQ_RETURN_IF_ERROR(s.Int("mimo_rank", &m.mimo_rank, false, 1, 64));
  }
  SUBQ_RETURN_IF_ERROR(s.Bool("is_outproj_norm", &m.output_norm));
  float a_floor = 1e-4f;
  SUBQ_RETURN_IF_ERROR(s.Float("A_floor", &a_floor));
  if (std::fabs(a_floor - 1e-4f) > 1e-9f)
    return s.Error("A_floor", fmt::format("= {} is not supported (1e-4)", a_floor));
  const double d_inner = static_cast<double>(expand) * c.dim;
  if (d_inner != std::floor(d_inner) || static_cast<int64_t>(d_inner) % m.head_dim != 0)
    return s.Error("headdim", fmt::format("= {} does not divide d_inner = expand * d_model = {}", m.head_dim, d_inner));
  m.n_heads = static_cast<int>(d_inner / m.head_dim);
  if (m.n_heads % m.n_groups != 0)
    return s.Error("ngroups", fmt::format("= {} does not divide the number of heads {}", m.n_groups, m.n_heads));

  json hybrid = j;
  if (auto a = hybrid.find("attn_cfg"); a != hybrid.end() && (a->is_null() || (a->is_object() && a->empty())))
    hybrid.erase("attn_cfg");  // mamba_ssm writes "attn_cfg": {} for pure models
  SUBQ_RETURN_IF_ERROR(ParseHybridFields(hybrid, path, MixerKind::kMamba3, &c));
  for (int l = 0; l < c.n_layers; ++l)
    if (!c.layers[l].attention_heads.empty())
      return Errorf(
          "{}: field 'attention_heads' names layer {}: kept attention heads are not supported in "
          "mamba3 layers",
          path, l);
  *cfg = std::move(c);
  return Status::Ok();
}

}  // namespace subq
