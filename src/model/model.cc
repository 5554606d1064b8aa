// The generic forward pass over a ragged batch: embed -> blocks (x += mixer(norm(x)); x += SwiGLU(norm(x)))
// -> norm -> LM head. Rows of all sequences are stacked; projections run once over all of them.
#include "model/model.h"

#include <algorithm>
#include <cstring>

#include "ops/ops.h"

namespace subq {

Result<std::unique_ptr<Model>> Model::FromCheckpoint(const Checkpoint& ckpt) {
  auto m = std::unique_ptr<Model>(new Model());
  m->cfg_ = ckpt.config;
  m->store_ = ckpt.tensors;
  const ModelConfig& c = m->cfg_;
  const TensorStore& st = m->store_;
  if (c.vocab_size <= 0 || c.dim <= 0 || c.n_layers <= 0)
    return Errorf("{}: bad config (vocab {}, dim {}, layers {})", ckpt.path, c.vocab_size, c.dim, c.n_layers);
  if (static_cast<int>(c.layers.size()) != c.n_layers)
    return Errorf("{}: config lists {} layer kinds for {} layers", ckpt.path, c.layers.size(), c.n_layers);
  if (c.max_seq_len <= 0) return Errorf("{}: bad config (max_seq_len {})", ckpt.path, c.max_seq_len);
  SUBQ_ASSIGN_OR_RETURN(FamilyKeys keys, KeysForFamily(c, st));
  const int64_t V = c.vocab_size, D = c.dim, F = c.hidden_dim;
  SUBQ_ASSIGN_OR_RETURN(m->embed_, st.LoadWeight(keys.embed, V, D));
  SUBQ_ASSIGN_OR_RETURN(m->final_norm_, st.Load(keys.final_norm, {D}));
  if (c.tie_embeddings) {
    m->lm_head_ = m->embed_;
  } else {
    SUBQ_ASSIGN_OR_RETURN(m->lm_head_, st.LoadWeight(keys.lm_head, V, D));
  }
  m->blocks_.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    Block& b = m->blocks_[l];
    const std::string p = keys.LayerPrefix(l);
    SUBQ_ASSIGN_OR_RETURN(b.in_norm, st.Load(p + keys.in_norm, {D}));
    // Oryx layers hold the attention's q/k/v/o under its prefix, and a KV cache.
    const bool attn = c.layers[l].mixer == MixerKind::kAttention || c.layers[l].mixer == MixerKind::kOryx;
    if (attn || !c.layers[l].attention_heads.empty()) m->has_attention_ = true;
    SUBQ_ASSIGN_OR_RETURN(b.mixer, MakeMixer(c, l, st, p + (attn ? keys.attention : keys.recurrent)));
    if (F > 0) {
      SUBQ_ASSIGN_OR_RETURN(b.mlp_norm, st.Load(p + keys.mlp_norm, {D}));
      SUBQ_ASSIGN_OR_RETURN(b.mlp.gate, st.LoadWeight(p + keys.mlp + "gate_proj.weight", F, D));
      SUBQ_ASSIGN_OR_RETURN(b.mlp.up, st.LoadWeight(p + keys.mlp + "up_proj.weight", F, D));
      SUBQ_ASSIGN_OR_RETURN(b.mlp.down, st.LoadWeight(p + keys.mlp + "down_proj.weight", D, F));
    }
  }
  return m;
}

Result<SequenceState> Model::NewSequence(int max_context) const {
  if (max_context < 0) return Errorf("context of {} tokens asked for", max_context);
  if (max_context > context_limit())
    return Errorf("context of {} tokens exceeds the model's limit of {} (max_seq_len)", max_context, context_limit());
  const int cap = max_context > 0 ? max_context : std::min(context_limit(), cfg_.max_seq_len);
  SequenceState s;
  s.owner = this;
  s.max_context = has_attention_ ? cap : INT_MAX;
  for (const auto& b : blocks_) s.layers.push_back(b.mixer->NewState(cap));
  return s;
}

size_t Model::ScratchFloats(int max_tokens, int n_threads) const {
  size_t n = 0;
  for (const auto& b : blocks_) n = std::max(n, b.mixer->ScratchFloats(max_tokens, n_threads));
  return n;
}

size_t Model::WeightBytes() const {
  size_t n = embed_.Bytes() / static_cast<size_t>(cfg_.vocab_size);  // one embedding row per token
  n += lm_head_.Bytes();
  n += final_norm_.data.size() * 4;
  for (const auto& b : blocks_) {
    n += (b.in_norm.data.size() + b.mlp_norm.data.size()) * 4;
    n += b.mlp.gate.Bytes() + b.mlp.up.Bytes() + b.mlp.down.Bytes();
    n += b.mixer->WeightBytes();
  }
  return n;
}

void Model::Embed(const int* tokens, int n, float* x) const {
  for (int t = 0; t < n; ++t) embed_.DequantizeRow(tokens[t], x + static_cast<size_t>(t) * cfg_.dim);
}

void Model::RunBlock(int l, float* x, int T, std::span<const SeqSlice> slices, Workspace& ws) const {
  const Block& b = blocks_[l];
  const int D = cfg_.dim, F = cfg_.hidden_dim;
  const size_t n = static_cast<size_t>(T) * D;
  float* u = ws.u_.data();
  float* mix = ws.mix_.data();
  ops::RmsNorm(x, b.in_norm.ptr(), u, T, D, cfg_.norm_eps);  // [T, D]
  Arena arena(ws.scratch_.data(), ws.scratch_.size());
  ExecContext ctx{ws.threads_, &arena, ws.ZeroedHeads(l)};
  b.mixer->Forward(u, T, slices, ctx, mix);  // [T, D]
  for (size_t i = 0; i < n; ++i) x[i] += mix[i];
  if (F > 0) {
    float* h1 = ws.h1_.data();
    float* h2 = ws.h2_.data();
    ops::RmsNorm(x, b.mlp_norm.ptr(), u, T, D, cfg_.norm_eps);            // [T, D]
    ops::Linear(ws.threads_, u, T, b.mlp.gate, h1);                         // [T, F]
    ops::Linear(ws.threads_, u, T, b.mlp.up, h2);                           // [T, F]
    ops::SiluMul(h1, h2, static_cast<int64_t>(T) * F);                      // [T, F]
    ops::Linear(ws.threads_, h1, T, b.mlp.down, x, /*accumulate=*/true);   // x += down(h)  [T, D]
  }
}

Status Model::CheckBatch(std::span<const SeqInput> batch, const Workspace& ws, int* total) const {
  if (batch.empty()) return Errorf("forward: empty batch");
  if (ws.owner_ != this) return Errorf("forward: workspace was made for another model");
  const int V = cfg_.vocab_size;
  int64_t T = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const SeqInput& in = batch[i];
    if (in.state == nullptr || in.tokens == nullptr || in.logits == nullptr) return Errorf("forward: null input");
    if (in.n <= 0) return Errorf("forward: empty token list");
    if (in.state->owner != this || in.state->layers.size() != blocks_.size())
      return Errorf("forward: sequence state belongs to another model");
    for (size_t j = 0; j < i; ++j)  // quadratic, allocation-free; batches are at most a few hundred
      if (batch[j].state == in.state) return Errorf("forward: one sequence state appears twice in a batch");
    if (static_cast<int64_t>(in.state->pos) + in.n > in.state->max_context)
      return Errorf("forward: {} tokens at position {} exceed the sequence's context of {} tokens", in.n,
                    in.state->pos, in.state->max_context);
    for (int t = 0; t < in.n; ++t)
      if (in.tokens[t] < 0 || in.tokens[t] >= V)
        return Errorf("forward: token id {} outside the vocabulary (0..{})", in.tokens[t], V - 1);
    T += in.n;
  }
  if (T > ws.max_tokens())
    return Errorf("forward: {} tokens in one call exceed the workspace's {} (feed longer prompts in pieces)", T,
                  ws.max_tokens());
  *total = static_cast<int>(T);
  return Status::Ok();
}

Status Model::Forward(std::span<const SeqInput> batch, Workspace& ws) const {
  int T = 0;
  SUBQ_RETURN_IF_ERROR(CheckBatch(batch, ws, &T));
  const int D = cfg_.dim;
  float* x = ws.x_.data();
  // Stack the rows and describe each sequence's slice once; every layer reads its own state.
  SeqSlice* slices = ws.slices_.data();
  const int B = static_cast<int>(batch.size());
  if (B > static_cast<int>(ws.slices_.size())) return Errorf("forward: batch of {} exceeds the workspace", B);
  int row = 0;
  for (int i = 0; i < B; ++i) {
    Embed(batch[i].tokens, batch[i].n, x + static_cast<size_t>(row) * D);
    slices[i] = SeqSlice{row, batch[i].n, batch[i].state->pos, nullptr, &batch[i].state->modes};
    row += batch[i].n;
  }
  for (int l = 0; l < cfg_.n_layers; ++l) {
    for (int i = 0; i < B; ++i) slices[i].state = batch[i].state->layers[l].get();
    RunBlock(l, x, T, std::span<const SeqSlice>(slices, B), ws);
  }
  // Final norm and LM head over the rows whose logits are wanted, written straight to each output.
  float* u = ws.u_.data();
  for (int i = 0; i < B; ++i) {
    const SeqInput& in = batch[i];
    in.state->pos += in.n;
    const int first = in.all_logits ? 0 : in.n - 1;
    const int rows = in.n - first;
    ops::RmsNorm(x + static_cast<size_t>(slices[i].row0 + first) * D, final_norm_.ptr(), u, rows, D, cfg_.norm_eps);
    ops::Linear(ws.threads_, u, rows, lm_head_, in.logits);  // [rows, V]
  }
  return Status::Ok();
}

Status Model::Forward(const int* tokens, int L, SequenceState& seq, Workspace& ws, float* logits,
                      bool all_logits) const {
  if (L <= 0) return Errorf("forward: empty token list");
  const int V = cfg_.vocab_size;
  for (int t0 = 0; t0 < L; t0 += ws.max_tokens()) {
    const int n = std::min(ws.max_tokens(), L - t0);
    SeqInput in{tokens + t0, n, &seq, all_logits ? logits + static_cast<size_t>(t0) * V : logits, all_logits};
    SUBQ_RETURN_IF_ERROR(Forward(std::span<const SeqInput>(&in, 1), ws));
  }
  return Status::Ok();
}

Result<Tensor> Model::LayerInput(const std::vector<int>& tokens, int layer) const {
  if (layer < 0 || layer >= cfg_.n_layers) return Errorf("layer {} out of range (model has {})", layer, cfg_.n_layers);
  const int L = static_cast<int>(tokens.size()), D = cfg_.dim;
  if (L == 0) return Errorf("empty prompt");
  for (int t : tokens)
    if (t < 0 || t >= cfg_.vocab_size) return Errorf("token id {} outside the vocabulary", t);
  SUBQ_ASSIGN_OR_RETURN(SequenceState seq, NewSequence(std::min(std::max(L, 1), context_limit())));
  if (L > seq.max_context) return Errorf("{} tokens exceed the model's context of {}", L, seq.max_context);
  Workspace ws(*this, L, Threads::Default());
  Tensor x({L, D});
  Embed(tokens.data(), L, x.ptr());
  const SeqSlice s{0, L, 0, nullptr};
  for (int l = 0; l < layer; ++l) {
    SeqSlice sl = s;
    sl.state = seq.layers[l].get();
    RunBlock(l, x.ptr(), L, std::span<const SeqSlice>(&sl, 1), ws);
  }
  return x;
}

Result<Tensor> Model::MixingMatrix(const std::vector<int>& tokens, int layer) const {
  SUBQ_ASSIGN_OR_RETURN(Tensor x, LayerInput(tokens, layer));
  const int L = static_cast<int>(tokens.size()), D = cfg_.dim;
  Tensor u({L, D});
  ops::RmsNorm(x.ptr(), blocks_[layer].in_norm.ptr(), u.ptr(), L, D, cfg_.norm_eps);
  return blocks_[layer].mixer->Materialize(u.ptr(), L);
}

}  // namespace subq
