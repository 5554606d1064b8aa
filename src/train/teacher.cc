// The Llama teacher (teacher.h). Shapes: B batch, L tokens, D d_model.
#include "train/teacher.h"

#include <fmt/format.h>

#include "io/checkpoint.h"
#include "model/schema.h"
#include "train/init.h"

namespace subq::train {

Result<std::unique_ptr<Teacher>> Teacher::Load(const std::string& path) {
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(path));
  const ModelConfig& c = ck.config;
  if (c.family != "llama") return Errorf("{}: teacher must be a Llama-family model, got family '{}'", path, c.family);
  for (const auto& l : c.layers)
    if (l.mixer != MixerKind::kAttention || !l.attention_heads.empty())
      return Errorf("{}: teacher layers must all be softmax attention", path);
  if (c.hidden_dim <= 0) return Errorf("{}: teacher has no MLP (hidden_dim 0)", path);
  auto t = std::make_unique<Teacher>();
  t->path = path;
  t->cfg_ = c;
  const auto& a = c.attn;
  const int64_t D = c.dim, F = c.hidden_dim, V = c.vocab_size, hd = a.head_dim;
  auto load = [&](const std::string& name, std::vector<int64_t> shape) -> Result<torch::Tensor> {
    SUBQ_ASSIGN_OR_RETURN(Tensor x, ck.tensors.Load(name, shape));
    return FromSubq(x);
  };
  // Names and shapes from the engine's tables: the llama family keys and the attention mixer's tensors.
  SUBQ_ASSIGN_OR_RETURN(const FamilyKeys k, KeysForFamily(c, ck.tensors));
  const std::vector<TensorSpec> attn = MixerKindTensors(c, MixerKind::kAttention);  // q, k, v, o
  const std::vector<std::string> mlp = MlpTensorNames(k);                           // gate, up, down
  SUBQ_ASSIGN_OR_RETURN(t->embed, load(k.embed, {V, D}));
  SUBQ_ASSIGN_OR_RETURN(t->final_norm, load(k.final_norm, {D}));
  if (c.tie_embeddings || !ck.tensors.Has(k.lm_head)) {
    t->lm_head = t->embed;
    t->cfg_.tie_embeddings = true;
  } else {
    SUBQ_ASSIGN_OR_RETURN(t->lm_head, load(k.lm_head, {V, D}));
  }
  const torch::Tensor inv = InvFreq(a);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = k.LayerPrefix(i);
    TeacherLayer L;
    SUBQ_ASSIGN_OR_RETURN(L.in_norm, load(p + k.in_norm, {D}));
    SUBQ_ASSIGN_OR_RETURN(L.mlp_norm, load(p + k.mlp_norm, {D}));
    SUBQ_ASSIGN_OR_RETURN(L.gate, load(p + mlp[0], {F, D}));
    SUBQ_ASSIGN_OR_RETURN(L.up, load(p + mlp[1], {F, D}));
    SUBQ_ASSIGN_OR_RETURN(L.down, load(p + mlp[2], {D, F}));
    L.attn.n_heads = a.n_heads;
    L.attn.n_kv_heads = a.n_kv_heads;
    L.attn.head_dim = a.head_dim;
    L.attn.inv_freq = inv;
    torch::Tensor* dst[] = {&L.attn.q, &L.attn.k, &L.attn.v, &L.attn.o};
    for (int j = 0; j < 4; ++j) {
      SUBQ_ASSIGN_OR_RETURN(*dst[j], load(p + k.attention + attn[j].name, attn[j].shape));
    }
    if (a.rope_interleaved) {
      L.attn.q = InterleavedToRotateHalf(L.attn.q, a.n_heads, hd);
      L.attn.k = InterleavedToRotateHalf(L.attn.k, a.n_kv_heads, hd);
    }
    t->layers.push_back(std::move(L));
  }
  t->cfg_.attn.rope_interleaved = false;  // weights are rotate-half from here on
  return t;
}

void Teacher::To(const torch::Device& d) {
  const bool tied = lm_head.is_same(embed);
  embed = embed.to(d);
  final_norm = final_norm.to(d);
  lm_head = tied ? embed : lm_head.to(d);
  for (auto& L : layers) {
    for (auto* x : {&L.in_norm, &L.mlp_norm, &L.gate, &L.up, &L.down, &L.attn.q, &L.attn.k, &L.attn.v, &L.attn.o})
      *x = x->to(d);
  }
}

torch::Tensor Teacher::Forward(const torch::Tensor& ids, Trace* trace, bool want_probs) const {
  torch::NoGradGuard ng;
  auto x = torch::embedding(embed, ids);  // [B, L, D]
  for (const auto& L : layers) {
    if (trace) trace->inputs.push_back(x);
    torch::Tensor probs;
    x = x + Attention(L.attn, RmsNorm(x, L.in_norm, cfg_.norm_eps), want_probs ? &probs : nullptr);
    if (trace && want_probs) trace->probs.push_back(probs);
    x = x + SwiGlu(RmsNorm(x, L.mlp_norm, cfg_.norm_eps), L.gate, L.up, L.down);
  }
  if (trace) trace->inputs.push_back(x);
  return torch::linear(RmsNorm(x, final_norm, cfg_.norm_eps), lm_head);  // [B, L, vocab]
}

}  // namespace subq::train
