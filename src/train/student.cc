// Students (student.h): built from the teacher, forward, per-layer access for stages 1-2, export names.
#include "train/student.h"

#include <algorithm>
#include <fmt/ranges.h>

#include "train/compute.h"
#include "train/student_mixers.h"

namespace subq::train {

ModelConfig StudentConfig(const ModelConfig& t, const StudentRecipe& s) {
  ModelConfig c;  // fields the student does not set keep the defaults the engine's parser leaves
  c.family = s.kind == "discrete_mamba2" ? "llamba" : s.kind;
  c.vocab_size = t.vocab_size, c.dim = t.dim, c.hidden_dim = t.hidden_dim, c.n_layers = t.n_layers;
  c.norm_eps = t.norm_eps, c.tie_embeddings = t.tie_embeddings, c.bos_id = t.bos_id, c.eos_id = t.eos_id;
  c.max_seq_len = 1 << 16;  // recurrent students have no positional limit of their own
  MixerKind kind = MixerKind::kDiscreteMamba2;
  if (s.kind == "mamba2") {
    kind = MixerKind::kMamba2;
    c.mamba2 = {.n_heads = s.n_v_heads, .head_dim = s.head_dim, .state_size = s.d_state, .n_groups = s.n_groups,
                .conv_kernel = s.conv_kernel, .chunk_size = s.chunk_size, .norm_eps = t.norm_eps, .norm_grouped = true};
  } else if (s.kind == "mamba3") {
    kind = MixerKind::kMamba3;
    c.mamba3 = {.n_heads = s.n_v_heads, .head_dim = s.head_dim, .state_size = s.d_state, .n_groups = s.n_groups,
                .mimo_rank = s.mimo_rank, .chunk_size = s.chunk_size,
                .rope_fraction = static_cast<float>(s.rope_fraction), .output_norm = s.outproj_norm};
  } else if (s.kind == "oryx") {  // a Llama config.json plus oryx_cfg; q/k/v/o are the teacher's attention's
    kind = MixerKind::kOryx;
    c.family = "llama";
    c.max_seq_len = t.max_seq_len;
    c.attn = t.attn;
    c.attn.rope_interleaved = false;
    c.oryx = {.recurrence = s.oryx_recurrence, .default_mode = "recurrent", .chunk_size = s.chunk_size};
  } else if (s.kind == "gated_deltanet") {
    kind = MixerKind::kGatedDeltaNet;
    c.gdn = {.n_qk_heads = s.n_qk_heads, .n_v_heads = s.n_v_heads, .head_k_dim = s.head_dim, .head_v_dim = s.d_state,
             .conv_kernel = s.conv_kernel, .chunk_size = 64, .norm_eps = t.norm_eps};  // engine chunk: fla has no field
  } else {
    c.dm2 = {.d_state = s.d_state, .n_qk_heads = s.n_qk_heads, .n_v_heads = s.n_v_heads, .head_dim = s.head_dim,
             .conv_kernel = s.conv_kernel, .chunk_size = s.chunk_size, .conv_bias = true};
  }
  c.layers.assign(c.n_layers, LayerConfig{kind, {}});
  for (int l : s.attention_layers)
    if (l >= 0 && l < c.n_layers) c.layers[l].mixer = MixerKind::kAttention;
  for (const auto& [l, h] : s.kept_heads)  // head hybrid: kept heads in keep order (= weight-row order)
    if (l >= 0 && l < c.n_layers) c.layers[l].attention_heads.push_back(h);
  if (!s.attention_layers.empty() || !s.kept_heads.empty()) {
    c.attn = t.attn;
    c.attn.rope_interleaved = false;  // the teacher's q/k rows are rotate-half once loaded
    if (s.kind == "gated_deltanet") c.max_seq_len = t.max_seq_len;  // fla: max_position_embeddings bounds RoPE
  }
  return c;
}

namespace {

// The mixer's tensors must be the table's (model/schema.h MixerTensors), name for name and shape for shape.
Status CheckMixerTensors(const ModelConfig& cfg, int l, const StudentMixer& m) {
  SUBQ_ASSIGN_OR_RETURN(std::vector<TensorSpec> want, MixerTensors(cfg, l));
  const std::vector<NamedTensor> got = m.Params();
  std::string a, b;
  for (const auto& t : want) a += fmt::format(" {}{}", t.name, t.shape);
  for (const auto& t : got) b += fmt::format(" {}{}", t.name, std::vector<int64_t>(t.t.sizes().begin(), t.t.sizes().end()));
  if (a != b) return Errorf("internal error: layer {} student mixer tensors{} differ from the schema's{}", l, b, a);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Student>> Student::FromTeacher(const Teacher& t, const StudentRecipe& s, uint64_t seed) {
  const ModelConfig& c = t.config();
  const auto& a = c.attn;
  for (int l : s.attention_layers)
    if (l < 0 || l >= c.n_layers)
      return Errorf("student.attention_layers: layer {} is out of range (teacher has {} layers)", l, c.n_layers);
  if (static_cast<int>(s.attention_layers.size()) == c.n_layers)
    return Errorf("student.attention_layers keeps all {} layers: nothing to distill", c.n_layers);
  std::vector<std::vector<int>> kept(c.n_layers);  // head hybrid: kept heads per layer
  for (const auto& [l, h] : s.kept_heads) {
    if (s.kind != "discrete_mamba2")
      return Errorf("student.keep_heads: head hybrids need student.kind discrete_mamba2 (got {})", s.kind);
    if (l < 0 || l >= c.n_layers) return Errorf("student.keep_heads: layer {} is out of range (0..{})", l, c.n_layers - 1);
    if (h < 0 || h >= a.n_heads || h >= s.n_v_heads)
      return Errorf("student.keep_heads: head {} of layer {} is out of range (teacher {} heads, student {})", h, l,
                    a.n_heads, s.n_v_heads);
    if (std::count(s.attention_layers.begin(), s.attention_layers.end(), l))
      return Errorf("student.keep_heads: layer {} is already a kept attention layer", l);
    if (std::count(kept[l].begin(), kept[l].end(), h)) return Errorf("student.keep_heads: [{}, {}] is listed twice", l, h);
    if (s.head_dim != a.head_dim)
      return Errorf("student.keep_heads: kept heads need head_dim = the teacher's head dim {} (got {})", a.head_dim,
                    s.head_dim);
    kept[l].push_back(h);
  }
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
  st->cfg = StudentConfig(c, s);
  SUBQ_ASSIGN_OR_RETURN(st->keys_, WriteKeysForFamily(st->cfg));
  const bool dm2 = s.kind == "discrete_mamba2";
  if (oryx) {  // the mode mask the Oryx layers share (student_mixers.h)
    st->oryx_modes = std::make_shared<OryxModes>();
    st->oryx_modes->attention_fraction = s.oryx_attention_fraction;
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
      L.mixer = MakeDm2Mixer(c.dim, s, init, &T.attn, kept[l]);
    } else {
      L.mixer = MakeMamba2Mixer(c.dim, s, c.norm_eps, init);
    }
    SUBQ_RETURN_IF_ERROR(CheckMixerTensors(st->cfg, l, *L.mixer));
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
  std::vector<NamedTensor> out{{keys_.embed, embed}};
  const std::vector<std::string> mlp = MlpTensorNames(keys_);  // gate, up, down
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& L = layers[l];
    const std::string p = keys_.LayerPrefix(static_cast<int>(l));
    const bool attn_prefix = L.mixer->is_attention() || cfg.layers[l].mixer == MixerKind::kOryx;  // as the engine
    const std::string& mixer = attn_prefix ? keys_.attention : keys_.recurrent;
    out.push_back({p + keys_.in_norm, L.in_norm});
    for (auto& m : L.mixer->Params()) out.push_back({p + mixer + m.name, m.t});  // names: the table (checked)
    out.push_back({p + keys_.mlp_norm, L.mlp_norm});
    out.push_back({p + mlp[0], L.gate});
    out.push_back({p + mlp[1], L.up});
    out.push_back({p + mlp[2], L.down});
  }
  out.push_back({keys_.final_norm, final_norm});
  if (!cfg.tie_embeddings) out.push_back({keys_.lm_head, lm_head});
  return out;
}

bool Student::IsKeptAttentionParam(const std::string& name) const {
  for (size_t l = 0; l < layers.size(); ++l)
    if (layers[l].mixer->is_attention() && name.rfind(keys_.LayerPrefix(static_cast<int>(l)) + keys_.attention, 0) == 0)
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

}  // namespace subq::train
