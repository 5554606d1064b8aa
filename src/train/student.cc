// Students (student.h): built from the teacher, forward, per-layer access for stages 1-2, export names.
#include "train/student.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "train/compute.h"
#include "train/student_mixers.h"

namespace subq::train {

Result<std::unique_ptr<Student>> Student::FromTeacher(const Teacher& t, const StudentRecipe& s, uint64_t seed) {
  const ModelConfig& c = t.config();
  const auto& a = c.attn;
  for (int l : s.attention_layers)
    if (l < 0 || l >= c.n_layers)
      return Errorf("student.attention_layers: layer {} is out of range (teacher has {} layers)", l, c.n_layers);
  if (static_cast<int>(s.attention_layers.size()) == c.n_layers)
    return Errorf("student.attention_layers keeps all {} layers: nothing to distill", c.n_layers);
  const int d_inner = s.n_v_heads * s.head_dim;
  const bool gdn = s.kind == "gated_deltanet", oryx = s.kind == "oryx";
  if (!gdn && !oryx && d_inner % c.dim != 0)
    return Errorf("student d_inner = n_v_heads x head_dim = {} must be a multiple of the teacher's d_model {}",
                  d_inner, c.dim);
  if (s.init == "attention" && !oryx) {
    const bool grouped = s.kind == "mamba2" || s.kind == "mamba3";
    const int qk = grouped ? s.n_groups : s.n_qk_heads;  // DM2 and Gated DeltaNet: n_qk_heads
    if (s.n_v_heads != a.n_heads || qk != a.n_heads || s.head_dim != a.head_dim || s.d_state != a.head_dim)
      return Errorf(
          "attention init needs the student's heads to map onto the teacher's: n_v_heads = {} = {} = {} (teacher "
          "heads) and head_dim = d_state = teacher head_dim {}; got n_v_heads {}, {} {}, head_dim {}, d_state {}",
          grouped ? "n_groups" : "n_qk_heads", "n_v_heads", a.n_heads, a.head_dim, s.n_v_heads,
          grouped ? "n_groups" : "n_qk_heads", qk, s.head_dim, s.d_state);
  }
  torch::manual_seed(seed);
  auto st = std::make_unique<Student>();
  st->spec = s;
  st->cfg = c;
  const bool dm2 = s.kind == "discrete_mamba2";
  if (oryx) {  // the teacher's Llama layout; mixers/oryx.h extras under self_attn.
    st->prefix_ = "model.layers.";
    st->embed_key_ = "model.embed_tokens.weight";
    st->final_norm_key_ = "model.norm.weight";
    st->in_norm_key_ = "input_layernorm.weight";
    st->mlp_norm_key_ = "post_attention_layernorm.weight";
    st->mixer_key_ = "self_attn.";
    st->oryx_modes = std::make_shared<OryxModes>();
    st->oryx_modes->attention_fraction = s.oryx_attention_fraction;
  } else if (gdn) {  // fla GatedDeltaNetForCausalLM (engine family gated_deltanet)
    st->prefix_ = "model.layers.";
    st->embed_key_ = "model.embeddings.weight";
    st->final_norm_key_ = "model.norm.weight";
    st->in_norm_key_ = "attn_norm.weight";
    st->mlp_norm_key_ = "mlp_norm.weight";
    st->mixer_key_ = "attn.";
  } else if (s.kind == "mamba3") {  // mamba_ssm MambaLMHeadModel (engine family mamba3)
    st->prefix_ = "backbone.layers.";
    st->embed_key_ = "backbone.embedding.weight";
    st->final_norm_key_ = "backbone.norm_f.weight";
    st->in_norm_key_ = "norm.weight";
    st->mlp_norm_key_ = "norm2.weight";
  } else if (dm2) {
    st->prefix_ = "backbone.layers.";
    st->embed_key_ = "backbone.embedding.weight";
    st->final_norm_key_ = "backbone.final_layernorm.weight";
    st->in_norm_key_ = "input_layernorm.weight";
    st->mlp_norm_key_ = "post_attention_layernorm.weight";
  } else {
    st->prefix_ = "backbone.layers.";
    st->embed_key_ = "backbone.embeddings.weight";
    st->final_norm_key_ = "backbone.norm_f.weight";
    st->in_norm_key_ = "norm.weight";
    st->mlp_norm_key_ = "norm2.weight";
  }
  st->embed = t.embed.clone();
  st->final_norm = t.final_norm.clone();
  st->lm_head = c.tie_embeddings ? st->embed : t.lm_head.clone();
  for (int l = 0; l < c.n_layers; ++l) {
    const TeacherLayer& T = t.layers[l];
    StudentLayer L;
    L.in_norm = T.in_norm.clone();
    L.mlp_norm = T.mlp_norm.clone();
    L.gate = T.gate.clone();
    L.up = T.up.clone();
    L.down = T.down.clone();
    const bool keep = std::find(s.attention_layers.begin(), s.attention_layers.end(), l) != s.attention_layers.end();
    const AttentionParams* init = s.init == "attention" ? &T.attn : nullptr;
    if (oryx) {
      L.mixer = MakeOryxMixer(s, T.attn, l, st->oryx_modes);
    } else if (keep) {
      L.mixer = MakeAttentionMixer(T.attn);
    } else if (gdn) {
      L.mixer = MakeGatedDeltaNetMixer(c.dim, s, c.norm_eps, init);
    } else if (s.kind == "mamba3") {
      L.mixer = MakeMamba3Mixer(c.dim, s, init);
    } else if (dm2) {
      L.mixer = MakeDm2Mixer(c.dim, s, init);
    } else {
      L.mixer = MakeMamba2Mixer(c.dim, s, c.norm_eps, init);
    }
    st->layers.push_back(std::move(L));
  }
  return st;
}

torch::Tensor Student::MixerOnInput(int l, const torch::Tensor& x) const {
  return layers[l].mixer->Forward(RmsNorm(x, layers[l].in_norm, cfg.norm_eps));
}

torch::Tensor Student::MaterializeOnInput(int l, const torch::Tensor& x) const {
  return layers[l].mixer->Materialize(RmsNorm(x, layers[l].in_norm, cfg.norm_eps));
}

torch::Tensor Student::MaterializeOnInput(int l, const torch::Tensor& x, int64_t h0, int64_t nh) const {
  return layers[l].mixer->Materialize(RmsNorm(x, layers[l].in_norm, cfg.norm_eps), h0, nh);
}

torch::Tensor Student::Block(int l, const torch::Tensor& x) const {
  const StudentLayer& L = layers[l];
  auto h = x + MixerOnInput(l, x);
  return h + SwiGlu(RmsNorm(h, L.mlp_norm, cfg.norm_eps), L.gate, L.up, L.down);
}

torch::Tensor Student::Logits(const torch::Tensor& ids) const {
  auto x = torch::embedding(embed, ids);  // [B, L, D]
  for (int l = 0; l < static_cast<int>(layers.size()); ++l) {
    if (!checkpoint_blocks) {
      x = Block(l, x);
      continue;
    }
    const StudentLayer& L = layers[l];
    std::vector<torch::Tensor> params{L.in_norm, L.mlp_norm, L.gate, L.up, L.down};
    for (auto& m : L.mixer->Params()) params.push_back(m.t);
    x = CheckpointedCall([this, l](const torch::Tensor& in) { return Block(l, in); }, x, params);
  }
  return torch::linear(RmsNorm(x, final_norm, cfg.norm_eps), lm_head);  // [B, L, vocab]
}

std::vector<NamedTensor> Student::Params() const {
  std::vector<NamedTensor> out{{embed_key_, embed}};
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& L = layers[l];
    const std::string p = prefix_ + std::to_string(l) + ".";
    out.push_back({p + in_norm_key_, L.in_norm});
    for (auto& m : L.mixer->Params()) out.push_back({p + mixer_key_ + m.name, m.t});
    out.push_back({p + mlp_norm_key_, L.mlp_norm});
    out.push_back({p + "mlp.gate_proj.weight", L.gate});
    out.push_back({p + "mlp.up_proj.weight", L.up});
    out.push_back({p + "mlp.down_proj.weight", L.down});
  }
  out.push_back({final_norm_key_, final_norm});
  if (!cfg.tie_embeddings) out.push_back({"lm_head.weight", lm_head});
  return out;
}

bool Student::IsKeptAttentionParam(const std::string& name) const {
  for (size_t l = 0; l < layers.size(); ++l)
    if (layers[l].mixer->is_attention() && name.rfind(prefix_ + std::to_string(l) + "." + mixer_key_, 0) == 0)
      return true;
  return false;
}

void Student::To(const torch::Device& d) {
  // Mixer tensors are members of the mixer objects: move them in place through their Params() handles.
  auto move = [&](torch::Tensor& t) { t.set_data(t.data().to(d)); };
  const bool tied = lm_head.is_same(embed);
  for (auto& nt : Params()) {
    torch::Tensor t = nt.t;  // shares the TensorImpl: set_data moves the member too
    move(t);
  }
  if (tied) lm_head = embed;
  for (auto& L : layers) L.mixer->MoveBuffers(d);
}

std::string Student::ConfigJson() const {
  using nlohmann::ordered_json;
  const auto& s = spec;
  ordered_json j;
  std::vector<int> attn_layers = s.attention_layers;
  std::sort(attn_layers.begin(), attn_layers.end());
  const int expand = s.n_v_heads * s.head_dim / cfg.dim;
  if (s.kind == "oryx") {  // a Llama config.json plus oryx_cfg (io/hf_config_oryx.cc)
    j["model_type"] = "llama";
    j["architectures"] = {"LlamaForCausalLM"};
    j["hidden_size"] = cfg.dim;
    j["intermediate_size"] = cfg.hidden_dim;
    j["num_hidden_layers"] = cfg.n_layers;
    j["num_attention_heads"] = cfg.attn.n_heads;
    j["num_key_value_heads"] = cfg.attn.n_kv_heads;
    j["head_dim"] = cfg.attn.head_dim;
    j["vocab_size"] = cfg.vocab_size;
    j["max_position_embeddings"] = cfg.max_seq_len;
    j["rms_norm_eps"] = cfg.norm_eps;
    j["rope_theta"] = cfg.attn.rope_theta;
    if (cfg.attn.rope_scaling.type == "llama3") {
      const auto& r = cfg.attn.rope_scaling;
      j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", r.factor}, {"low_freq_factor", r.low_freq_factor},
                           {"high_freq_factor", r.high_freq_factor},
                           {"original_max_position_embeddings", r.original_max_position_embeddings}};
    }
    j["hidden_act"] = "silu";
    j["tie_word_embeddings"] = cfg.tie_embeddings;
    j["oryx_cfg"] = {{"recurrence", s.oryx_recurrence}, {"default_mode", "recurrent"}, {"chunk_size", s.chunk_size}};
  } else if (s.kind == "gated_deltanet") {  // read by io/hf_config_gated_deltanet.cc
    j["model_type"] = "gated_deltanet";
    j["architectures"] = {"GatedDeltaNetForCausalLM"};
    j["hidden_size"] = cfg.dim;
    j["num_hidden_layers"] = cfg.n_layers;
    j["vocab_size"] = cfg.vocab_size;
    j["num_heads"] = s.n_qk_heads;
    j["num_v_heads"] = s.n_v_heads;
    j["head_dim"] = s.head_dim;
    j["expand_v"] = static_cast<double>(s.d_state) / s.head_dim;  // recipe checks it is exact in f32
    j["conv_size"] = s.conv_kernel;
    j["norm_eps"] = cfg.norm_eps;
    j["intermediate_size"] = cfg.hidden_dim;
    j["hidden_act"] = "swish";
    j["use_gate"] = true;
    j["use_short_conv"] = true;
    j["allow_neg_eigval"] = false;
    j["tie_word_embeddings"] = cfg.tie_embeddings;
    j["max_position_embeddings"] = cfg.max_seq_len;
  } else if (s.kind == "mamba3") {  // read by io/hf_config_mamba3.cc
    j["model_type"] = "mamba3";
    j["d_model"] = cfg.dim;
    j["d_intermediate"] = 0;
    j["n_layer"] = cfg.n_layers;
    j["vocab_size"] = cfg.vocab_size;
    j["pad_vocab_size_multiple"] = 1;
    j["tie_embeddings"] = cfg.tie_embeddings;
    j["norm_epsilon"] = cfg.norm_eps;
    j["rms_norm"] = true;
    j["ssm_cfg"] = {{"layer", "Mamba3"},     {"d_state", s.d_state},      {"expand", expand},
                    {"headdim", s.head_dim}, {"ngroups", s.n_groups},     {"rope_fraction", 0.5},
                    {"is_mimo", false},      {"chunk_size", s.chunk_size}, {"is_outproj_norm", false}};
    j["mlp_cfg"] = {{"intermediate_size", cfg.hidden_dim}, {"bias", false}, {"act_fn", "silu"}};
  } else if (s.kind == "discrete_mamba2") {
    j["model_type"] = "llamba";
    j["architectures"] = {"LlambaForCausalLM"};
    j["d_model"] = cfg.dim;
    j["n_layer"] = cfg.n_layers;
    j["vocab_size"] = cfg.vocab_size;
    j["pad_vocab_size_multiple"] = 1;
    j["tie_embeddings"] = cfg.tie_embeddings;
    j["lm_head_bias"] = false;
    j["norm_epsilon"] = cfg.norm_eps;
    j["ssm_cfg"] = {{"d_state", s.d_state},       {"n_qk_heads", s.n_qk_heads}, {"n_v_heads", s.n_v_heads},
                    {"d_conv", s.conv_kernel},    {"expand", expand},           {"chunk_size", s.chunk_size},
                    {"activation", "identity"},   {"bias", false},              {"conv_bias", true}};
    j["mlp_cfg"] = {{"intermediate_size", cfg.hidden_dim}, {"bias", false}, {"act_fn", "silu"}};
  } else {
    j["model_type"] = "mamba2";
    j["architectures"] = {"Mamba2ForCausalLM"};
    j["hidden_size"] = cfg.dim;
    j["num_hidden_layers"] = cfg.n_layers;
    j["vocab_size"] = cfg.vocab_size;
    j["tie_word_embeddings"] = cfg.tie_embeddings;
    j["layer_norm_epsilon"] = cfg.norm_eps;
    j["num_heads"] = s.n_v_heads;
    j["head_dim"] = s.head_dim;
    j["state_size"] = s.d_state;
    j["n_groups"] = s.n_groups;
    j["conv_kernel"] = s.conv_kernel;
    j["expand"] = expand;
    j["chunk_size"] = s.chunk_size;
    j["use_conv_bias"] = true;
    j["use_bias"] = false;
    j["rms_norm"] = true;
    j["norm_before_gate"] = false;
    j["residual_in_fp32"] = true;
    j["mlp_cfg"] = {{"intermediate_size", cfg.hidden_dim}, {"bias", false}, {"act_fn", "silu"}};
  }
  if (!attn_layers.empty()) {
    j["attention_layers"] = attn_layers;
    j["attn_cfg"] = {{"num_heads", cfg.attn.n_heads},
                     {"num_key_value_heads", cfg.attn.n_kv_heads},
                     {"head_dim", cfg.attn.head_dim},
                     {"rope_theta", cfg.attn.rope_theta}};
  }
  j["bos_token_id"] = cfg.bos_id;
  j["eos_token_id"] = cfg.eos_id;
  j["torch_dtype"] = "float32";
  return j.dump(2);
}

}  // namespace subq::train
