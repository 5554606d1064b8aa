// The generic forward pass: embed -> blocks (x += mixer(norm(x)); x += SwiGLU(norm(x))) -> norm -> LM head.
#include "model/model.h"

#include <algorithm>
#include <cstring>

#include "ops/ops.h"

namespace subq {

Result<std::unique_ptr<Model>> Model::FromCheckpoint(const Checkpoint& ckpt) {
  auto m = std::unique_ptr<Model>(new Model());
  m->cfg_ = ckpt.config;
  const ModelConfig& c = m->cfg_;
  const TensorStore& st = ckpt.tensors;
  if (c.vocab_size <= 0 || c.dim <= 0 || c.n_layers <= 0)
    return Errorf("{}: bad config (vocab {}, dim {}, layers {})", ckpt.path, c.vocab_size, c.dim, c.n_layers);
  if (static_cast<int>(c.layers.size()) != c.n_layers)
    return Errorf("{}: config lists {} layer kinds for {} layers", ckpt.path, c.layers.size(), c.n_layers);
  SUBQ_ASSIGN_OR_RETURN(FamilyKeys keys, KeysForFamily(c, st));
  const int64_t V = c.vocab_size, D = c.dim, F = c.hidden_dim;
  SUBQ_ASSIGN_OR_RETURN(m->embed_, st.Load(keys.embed, {V, D}));
  SUBQ_ASSIGN_OR_RETURN(m->final_norm_, st.Load(keys.final_norm, {D}));
  if (!c.tie_embeddings) {
    SUBQ_ASSIGN_OR_RETURN(m->lm_head_, st.Load(keys.lm_head, {V, D}));
  }
  m->blocks_.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    Block& b = m->blocks_[l];
    const std::string p = keys.LayerPrefix(l);
    SUBQ_ASSIGN_OR_RETURN(b.in_norm, st.Load(p + keys.in_norm, {D}));
    const bool attn = c.layers[l].mixer == MixerKind::kAttention;
    SUBQ_ASSIGN_OR_RETURN(b.mixer, MakeMixer(c, l, st, p + (attn ? keys.attention : keys.recurrent)));
    if (F > 0) {
      SUBQ_ASSIGN_OR_RETURN(b.mlp_norm, st.Load(p + keys.mlp_norm, {D}));
      SUBQ_ASSIGN_OR_RETURN(b.mlp.gate, st.Load(p + keys.mlp + "gate_proj.weight", {F, D}));
      SUBQ_ASSIGN_OR_RETURN(b.mlp.up, st.Load(p + keys.mlp + "up_proj.weight", {F, D}));
      SUBQ_ASSIGN_OR_RETURN(b.mlp.down, st.Load(p + keys.mlp + "down_proj.weight", {D, F}));
    }
  }
  return m;
}

SequenceState Model::NewSequence() const {
  SequenceState s;
  for (const auto& b : blocks_) s.layers.push_back(b.mixer->NewState());
  return s;
}

void Model::RunBlock(int l, float* x, int L, int pos, SequenceState& seq) {
  Block& b = blocks_[l];
  const int D = cfg_.dim, F = cfg_.hidden_dim;
  const size_t n = static_cast<size_t>(L) * D;
  ops::RmsNorm(x, b.in_norm.ptr(), u_.data(), L, D, cfg_.norm_eps);          // [L, D]
  b.mixer->Forward(u_.data(), L, pos, *seq.layers[l], mix_.data());          // [L, D]
  for (size_t i = 0; i < n; ++i) x[i] += mix_[i];
  if (F > 0) {
    ops::RmsNorm(x, b.mlp_norm.ptr(), u_.data(), L, D, cfg_.norm_eps);       // [L, D]
    ops::Linear(u_.data(), b.mlp.gate.ptr(), h1_.data(), L, D, F);           // [L, F]
    ops::Linear(u_.data(), b.mlp.up.ptr(), h2_.data(), L, D, F);             // [L, F]
    const size_t nf = static_cast<size_t>(L) * F;
    for (size_t i = 0; i < nf; ++i) h1_[i] = ops::Silu(h1_[i]) * h2_[i];
    ops::Linear(h1_.data(), b.mlp.down.ptr(), x, L, F, D, /*accumulate=*/true);  // x += down(h)
  }
}

static void GrowTo(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

Status Model::Forward(const int* tokens, int L, SequenceState& seq, float* logits, bool all_logits) {
  const int D = cfg_.dim, V = cfg_.vocab_size;
  if (L <= 0) return Errorf("forward: empty token list");
  if (seq.layers.size() != blocks_.size()) return Errorf("forward: sequence state belongs to another model");
  for (int t = 0; t < L; ++t)
    if (tokens[t] < 0 || tokens[t] >= V) return Errorf("forward: token id {} outside the vocabulary (0..{})", tokens[t], V - 1);
  GrowTo(x_, static_cast<size_t>(L) * D);
  GrowTo(u_, static_cast<size_t>(L) * D);
  GrowTo(mix_, static_cast<size_t>(L) * D);
  GrowTo(h1_, static_cast<size_t>(L) * std::max(cfg_.hidden_dim, 1));
  GrowTo(h2_, static_cast<size_t>(L) * std::max(cfg_.hidden_dim, 1));
  for (int t = 0; t < L; ++t)
    std::memcpy(x_.data() + static_cast<size_t>(t) * D, embed_.ptr() + static_cast<size_t>(tokens[t]) * D, D * 4);
  for (int l = 0; l < cfg_.n_layers; ++l) RunBlock(l, x_.data(), L, seq.pos, seq);
  seq.pos += L;
  const float* head = cfg_.tie_embeddings ? embed_.ptr() : lm_head_.ptr();
  const int first = all_logits ? 0 : L - 1;
  const int rows = L - first;
  ops::RmsNorm(x_.data() + static_cast<size_t>(first) * D, final_norm_.ptr(), u_.data(), rows, D, cfg_.norm_eps);
  ops::Linear(u_.data(), head, logits, rows, D, V);  // [rows, V]
  return Status::Ok();
}

Result<Tensor> Model::LayerInput(const std::vector<int>& tokens, int layer) {
  if (layer < 0 || layer >= cfg_.n_layers) return Errorf("layer {} out of range (model has {})", layer, cfg_.n_layers);
  const int L = static_cast<int>(tokens.size()), D = cfg_.dim;
  if (L == 0) return Errorf("empty prompt");
  for (int t : tokens)
    if (t < 0 || t >= cfg_.vocab_size) return Errorf("token id {} outside the vocabulary", t);
  SequenceState seq = NewSequence();
  GrowTo(u_, static_cast<size_t>(L) * D);
  GrowTo(mix_, static_cast<size_t>(L) * D);
  GrowTo(h1_, static_cast<size_t>(L) * std::max(cfg_.hidden_dim, 1));
  GrowTo(h2_, static_cast<size_t>(L) * std::max(cfg_.hidden_dim, 1));
  Tensor x({L, D});
  for (int t = 0; t < L; ++t)
    std::memcpy(x.ptr() + static_cast<size_t>(t) * D, embed_.ptr() + static_cast<size_t>(tokens[t]) * D, D * 4);
  for (int l = 0; l < layer; ++l) RunBlock(l, x.ptr(), L, 0, seq);
  return x;
}

Result<Tensor> Model::MixingMatrix(const std::vector<int>& tokens, int layer) {
  SUBQ_ASSIGN_OR_RETURN(Tensor x, LayerInput(tokens, layer));
  const int L = static_cast<int>(tokens.size()), D = cfg_.dim;
  Tensor u({L, D});
  ops::RmsNorm(x.ptr(), blocks_[layer].in_norm.ptr(), u.ptr(), L, D, cfg_.norm_eps);
  return blocks_[layer].mixer->Materialize(u.ptr(), L);
}

}  // namespace subq
