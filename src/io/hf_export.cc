#include "io/hf_export.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "io/checkpoint.h"
#include "io/hf_config.h"
#include "io/hf_write.h"
#include "io/quantized.h"
#include "io/safetensors_write.h"

namespace subq {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The output tensors, each owning its bytes (raw copies of the source or converted f32).
class OutTensors {
 public:
  void Raw(const std::string& name, const TensorInfo& t) {
    bytes_.emplace_back(t.data, t.data + t.nbytes);
    views_.push_back({name, t.dtype, t.shape, nullptr, t.nbytes});
  }
  void F32(const std::string& name, const Tensor& t) {
    std::vector<uint8_t> b(t.data.size() * sizeof(float));
    std::memcpy(b.data(), t.data.data(), b.size());
    bytes_.push_back(std::move(b));
    views_.push_back({name, DType::kF32, t.shape, nullptr, t.data.size() * sizeof(float)});
  }
  std::vector<TensorBytes> Views() {
    for (size_t i = 0; i < views_.size(); ++i) views_[i].data = bytes_[i].data();
    return views_;
  }

 private:
  std::vector<std::vector<uint8_t>> bytes_;
  std::vector<TensorBytes> views_;
};

// Copies source tensor `src` as `dst`: raw when unquantized, else dequantized to f32. Marks it used.
Status Copy(const Checkpoint& ck, const std::string& src, const std::string& dst, OutTensors* out,
            std::set<std::string>* used) {
  const TensorInfo* t = ck.tensors.Find(src);
  if (t == nullptr) return Errorf("{}: tensor '{}' is missing", ck.path, src);
  used->insert(src);
  if (ck.tensors.Has(ScaleName(src))) {
    used->insert(ScaleName(src));
    SUBQ_ASSIGN_OR_RETURN(Tensor x, ck.tensors.LoadAny(src));
    out->F32(dst, x);
    return Status::Ok();
  }
  out->Raw(dst, *t);
  return Status::Ok();
}

Result<Tensor> LoadUsed(const Checkpoint& ck, const std::string& name, std::set<std::string>* used) {
  used->insert(name);
  if (ck.tensors.Has(ScaleName(name))) used->insert(ScaleName(name));
  return ck.tensors.LoadAny(name);
}

// q/k projections as HF wants them (rotate-half rows), f32.
Status CopyQk(const Checkpoint& ck, const std::string& src, const std::string& dst, OutTensors* out,
              std::set<std::string>* used) {
  if (!ck.config.attn.rope_interleaved) return Copy(ck, src, dst, out, used);
  SUBQ_ASSIGN_OR_RETURN(Tensor x, LoadUsed(ck, src, used));
  ToRotateHalf(&x, ck.config.attn.head_dim);
  out->F32(dst, x);
  return Status::Ok();
}

bool HasAttention(const ModelConfig& c) {
  for (const auto& l : c.layers)
    if (l.mixer == MixerKind::kAttention || !l.attention_heads.empty()) return true;
  return false;
}

Status ExportLlama(const Checkpoint& ck, OutTensors* out, std::set<std::string>* used) {
  for (const TensorInfo& t : ck.tensors.tensors()) {
    if (used->count(t.name) || EndsWith(t.name, "_scale")) continue;
    if (EndsWith(t.name, ".self_attn.q_proj.weight") || EndsWith(t.name, ".self_attn.k_proj.weight")) {
      SUBQ_RETURN_IF_ERROR(CopyQk(ck, t.name, t.name, out, used));
    } else {
      SUBQ_RETURN_IF_ERROR(Copy(ck, t.name, t.name, out, used));
    }
  }
  return Status::Ok();
}

// Every tensor under its own name, except those `rename` maps.
Status ExportRenamed(const Checkpoint& ck, const std::map<std::string, std::string>& rename, OutTensors* out,
                     std::set<std::string>* used) {
  for (const TensorInfo& t : ck.tensors.tensors()) {
    if (used->count(t.name) || EndsWith(t.name, "_scale")) continue;
    auto it = rename.find(t.name);
    SUBQ_RETURN_IF_ERROR(Copy(ck, t.name, it == rename.end() ? t.name : it->second, out, used));
  }
  return Status::Ok();
}

// GraniteMoeHybrid: model.layers.{i}.{input_layernorm, mamba.* | self_attn.*, post_attention_layernorm,
// shared_mlp.input_linear ([gate; up]), shared_mlp.output_linear}, model.embed_tokens, model.norm, lm_head.
Status ExportGranite(const Checkpoint& ck, OutTensors* out, std::set<std::string>* used) {
  const ModelConfig& c = ck.config;
  const std::string embed = ck.tensors.Has("backbone.embeddings.weight") ? "backbone.embeddings.weight"
                                                                           : "backbone.embedding.weight";
  SUBQ_RETURN_IF_ERROR(Copy(ck, embed, "model.embed_tokens.weight", out, used));
  SUBQ_RETURN_IF_ERROR(Copy(ck, "backbone.norm_f.weight", "model.norm.weight", out, used));
  if (ck.tensors.Has("lm_head.weight")) SUBQ_RETURN_IF_ERROR(Copy(ck, "lm_head.weight", "lm_head.weight", out, used));
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string s = fmt::format("backbone.layers.{}.", i), d = fmt::format("model.layers.{}.", i);
    SUBQ_RETURN_IF_ERROR(Copy(ck, s + "norm.weight", d + "input_layernorm.weight", out, used));
    SUBQ_RETURN_IF_ERROR(Copy(ck, s + "norm2.weight", d + "post_attention_layernorm.weight", out, used));
    SUBQ_ASSIGN_OR_RETURN(Tensor gate, LoadUsed(ck, s + "mlp.gate_proj.weight", used));  // [F, D]
    SUBQ_ASSIGN_OR_RETURN(Tensor up, LoadUsed(ck, s + "mlp.up_proj.weight", used));      // [F, D]
    Tensor gate_up({2 * gate.shape[0], gate.shape[1]});                                 // [2F, D]
    std::copy(gate.data.begin(), gate.data.end(), gate_up.data.begin());
    std::copy(up.data.begin(), up.data.end(), gate_up.data.begin() + static_cast<std::ptrdiff_t>(gate.data.size()));
    out->F32(d + "shared_mlp.input_linear.weight", gate_up);
    SUBQ_RETURN_IF_ERROR(Copy(ck, s + "mlp.down_proj.weight", d + "shared_mlp.output_linear.weight", out, used));
    const bool attn = c.layers[i].mixer == MixerKind::kAttention;
    for (const TensorInfo& t : ck.tensors.tensors()) {
      if (!StartsWith(t.name, s + "mixer.") || used->count(t.name) || EndsWith(t.name, "_scale")) continue;
      const std::string leaf = t.name.substr(s.size() + 6);
      const std::string dst = d + (attn ? "self_attn." : "mamba.") + leaf;
      if (attn && (leaf == "q_proj.weight" || leaf == "k_proj.weight")) {
        SUBQ_RETURN_IF_ERROR(CopyQk(ck, t.name, dst, out, used));
      } else {
        SUBQ_RETURN_IF_ERROR(Copy(ck, t.name, dst, out, used));
      }
    }
  }
  return Status::Ok();
}

Result<ordered_json> GraniteConfigJson(const Checkpoint& ck) {
  const ModelConfig& c = ck.config;
  const Mamba2Config& m = c.mamba2;
  if (m.d_inner() % c.dim != 0)
    return Errorf("{}: d_inner {} is not a multiple of the width {} (GraniteMoeHybrid needs an integral mamba_expand)",
                  ck.path, m.d_inner(), c.dim);
  if (std::fabs(m.norm_eps - c.norm_eps) > 1e-12f)
    return Errorf("{}: the gated norm eps {} differs from the block norm eps {}; GraniteMoeHybrid uses one rms_norm_eps",
                  ck.path, m.norm_eps, c.norm_eps);
  if (!m.norm_grouped && m.n_groups > 1)
    return Errorf("{}: an ungrouped gated norm with {} groups has no GraniteMoeHybrid equivalent", ck.path, m.n_groups);
  bool conv_bias = true;
  for (int i = 0; i < c.n_layers; ++i)
    if (c.layers[i].mixer != MixerKind::kAttention)
      conv_bias = ck.tensors.Has(fmt::format("backbone.layers.{}.mixer.conv1d.bias", i));
  ordered_json layer_types = ordered_json::array();
  for (const auto& l : c.layers) layer_types.push_back(l.mixer == MixerKind::kAttention ? "full_attention" : "linear_attention");
  const int heads = c.attn.n_heads > 0 ? c.attn.n_heads : 1;
  const int head_dim = c.attn.head_dim > 0 ? c.attn.head_dim : c.dim / heads;
  ordered_json rope = {{"rope_type", "default"}, {"rope_theta", c.attn.rope_theta}};
  const RopeScaling& r = c.attn.rope_scaling;
  if (r.type == "llama3")
    rope = {{"rope_type", "llama3"}, {"rope_theta", c.attn.rope_theta}, {"factor", r.factor},
            {"low_freq_factor", r.low_freq_factor}, {"high_freq_factor", r.high_freq_factor},
            {"original_max_position_embeddings", r.original_max_position_embeddings}};
  return ordered_json{{"architectures", {"GraniteMoeHybridForCausalLM"}},
                      {"model_type", "granitemoehybrid"},
                      {"vocab_size", c.vocab_size},
                      {"hidden_size", c.dim},
                      {"intermediate_size", c.hidden_dim},
                      {"shared_intermediate_size", c.hidden_dim},
                      {"num_hidden_layers", c.n_layers},
                      {"num_attention_heads", heads},
                      {"num_key_value_heads", c.attn.n_kv_heads > 0 ? c.attn.n_kv_heads : heads},
                      {"head_dim", head_dim},
                      {"hidden_act", "silu"},
                      {"rms_norm_eps", c.norm_eps},
                      {"max_position_embeddings", c.max_seq_len},
                      {"tie_word_embeddings", c.tie_embeddings},
                      {"bos_token_id", c.bos_id},
                      {"eos_token_id", c.eos_id},
                      {"embedding_multiplier", 1.0},
                      {"logits_scaling", 1.0},
                      {"residual_multiplier", 1.0},
                      {"attention_multiplier", 1.0 / std::sqrt(static_cast<double>(head_dim))},
                      {"num_local_experts", 0},
                      {"num_experts_per_tok", 0},
                      {"position_embedding_type", "rope"},
                      {"rope_parameters", rope},
                      {"layer_types", layer_types},
                      {"mamba_n_heads", m.n_heads},
                      {"mamba_n_groups", m.n_groups},
                      {"mamba_d_state", m.state_size},
                      {"mamba_d_head", m.head_dim},
                      {"mamba_d_conv", m.conv_kernel},
                      {"mamba_expand", m.d_inner() / c.dim},
                      {"mamba_chunk_size", m.chunk_size},
                      {"mamba_conv_bias", conv_bias},
                      {"mamba_proj_bias", false},
                      {"torch_dtype", "float32"}};
}

}  // namespace

Result<HfExportReport> ExportHf(const std::string& model, const std::string& out_dir) {
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(model));
  std::error_code ec;
  if (fs::exists(out_dir, ec) && fs::equivalent(out_dir, ck.path, ec))
    return Errorf("{}: the output folder must differ from the model's folder", out_dir);
  const ModelConfig& c = ck.config;
  HfExportReport rep;
  OutTensors out;
  std::set<std::string> used;
  ordered_json config;
  if (c.family == "llama") {
    if (HasAttention(c) && c.hidden_dim == 0) return Errorf("{}: a Llama model without MLPs has no HF layout", model);
    for (const auto& l : c.layers)
      if (l.mixer != MixerKind::kAttention)
        return Errorf("{}: a Llama-named model with recurrent layers has no HF layout", model);
    rep.layout = "LlamaForCausalLM";
    config = LlamaConfigJson(c);
    SUBQ_RETURN_IF_ERROR(ExportLlama(ck, &out, &used));
  } else if (c.family == "mamba2" && c.hidden_dim == 0 && !HasAttention(c)) {
    rep.layout = "Mamba2ForCausalLM";
    SUBQ_ASSIGN_OR_RETURN(config, Mamba2ConfigJson(c, ck.tensors.Has("backbone.layers.0.mixer.conv1d.bias"), model));
    if (std::fabs(c.mamba2.norm_eps - c.norm_eps) > 1e-12f)
      return Errorf("{}: the gated norm eps {} differs from the block norm eps {}; Mamba2ForCausalLM uses one "
                    "layer_norm_epsilon", model, c.mamba2.norm_eps, c.norm_eps);
    SUBQ_RETURN_IF_ERROR(ExportRenamed(ck, {{"backbone.embedding.weight", "backbone.embeddings.weight"}}, &out, &used));
  } else if (c.family == "mamba2") {
    if (c.hidden_dim == 0)
      return Errorf("{}: a Mamba-2 + attention hybrid without MLPs has no transformers layout", model);
    rep.layout = "GraniteMoeHybridForCausalLM";
    SUBQ_ASSIGN_OR_RETURN(config, GraniteConfigJson(ck));
    SUBQ_RETURN_IF_ERROR(ExportGranite(ck, &out, &used));
  } else if (c.family == "llamba") {
    if (HasAttention(c))
      return Errorf("{}: a Llamba hybrid with attention layers or heads has no cartesia Llamba layout (cartesia's "
                    "LlambaForCausalLM has no attention); subq reads the folder as it is", model);
    rep.layout = "LlambaForCausalLM (cartesia)";
    SUBQ_ASSIGN_OR_RETURN(config, WriteHfConfig(c));  // cartesia-ai/edge LlambaConfig keys (SPEC 3)
    SUBQ_RETURN_IF_ERROR(ExportRenamed(ck, {}, &out, &used));  // subq reads cartesia's key names as they are
  } else {
    return Errorf("{}: family '{}' has no layout in transformers; it is already in its reference layout (mamba3: "
                  "mamba_ssm, gated_deltanet: fla), which subq writes and reads", model, c.family);
  }
  for (const TensorInfo& t : ck.tensors.tensors())
    if (!used.count(t.name)) return Errorf("{}: tensor '{}' has no place in the {} layout", model, t.name, rep.layout);
  fs::create_directories(out_dir, ec);
  if (ec) return Errorf("{}: cannot create the folder: {}", out_dir, ec.message());
  const std::vector<TensorBytes> views = out.Views();
  for (const auto& v : views) rep.bytes += v.nbytes;
  rep.tensors = static_cast<int>(views.size());
  SUBQ_RETURN_IF_ERROR(WriteSafetensors((fs::path(out_dir) / "model.safetensors").string(), views));
  SUBQ_RETURN_IF_ERROR(WriteJsonAtomic((fs::path(out_dir) / "config.json").string(), config));
  SUBQ_RETURN_IF_ERROR(CopyTokenizerFiles(ck, out_dir, &rep.copied));
  SUBQ_RETURN_IF_ERROR(WriteLlamaTokenizerConfig(out_dir, c.max_seq_len, &rep.copied));
  return rep;
}

}  // namespace subq
