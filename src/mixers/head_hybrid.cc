// Kept attention heads of a head-level hybrid Discrete Mamba-2 layer (see head_hybrid.h).
#include "mixers/head_hybrid.h"

#include <algorithm>
#include <cstring>

#include "mixers/ssm_state.h"
#include "ops/ops.h"

namespace subq {

Result<std::unique_ptr<KeptHeadAttention>> KeptHeadAttention::Load(const ModelConfig& cfg, int layer,
                                                                   const TensorStore& store,
                                                                   const std::string& prefix, int n_v_heads,
                                                                   int head_dim) {
  const std::vector<int>& heads = cfg.layers[layer].attention_heads;
  if (head_dim % 2 != 0)
    return Errorf("layer {}: kept attention heads need an even head_dim for RoPE (got {})", layer, head_dim);
  for (size_t i = 0; i < heads.size(); ++i) {
    if (heads[i] < 0 || heads[i] >= n_v_heads)
      return Errorf("layer {}: kept attention head {} outside 0..{}", layer, heads[i], n_v_heads - 1);
    for (size_t k = 0; k < i; ++k)
      if (heads[k] == heads[i]) return Errorf("layer {}: kept attention head {} listed twice", layer, heads[i]);
  }
  auto a = std::unique_ptr<KeptHeadAttention>(new KeptHeadAttention());
  a->heads_ = heads;
  a->hd_ = head_dim;
  a->dim_ = cfg.dim;
  AttentionConfig rope = cfg.attn;
  rope.head_dim = head_dim;
  const int nk = static_cast<int>(heads.size());
  a->core_ = AttentionCore{nk, nk, head_dim, /*interleaved=*/false, RopeInvFreq(rope)};
  const int64_t rows = static_cast<int64_t>(nk) * head_dim, d = cfg.dim;
  SUBQ_ASSIGN_OR_RETURN(a->wq_, store.LoadWeight(prefix + "attn_q_proj.weight", rows, d));
  SUBQ_ASSIGN_OR_RETURN(a->wk_, store.LoadWeight(prefix + "attn_k_proj.weight", rows, d));
  SUBQ_ASSIGN_OR_RETURN(a->wv_, store.LoadWeight(prefix + "attn_v_proj.weight", rows, d));
  return a;
}

size_t KeptHeadAttention::ScratchFloats(int T, int n_threads) const {
  return static_cast<size_t>(T) * n_kept() * hd_ * 4 + 4 * Arena::kAlign + core_.ScratchFloats(n_threads);
}

void KeptHeadAttention::Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* y,
                                int ldy) const {
  const int nk = n_kept(), w = nk * hd_;
  float* q = ctx.arena->Take(static_cast<size_t>(T) * w);    // [T, nk*P]
  float* k = ctx.arena->Take(static_cast<size_t>(T) * w);    // [T, nk*P]
  float* v = ctx.arena->Take(static_cast<size_t>(T) * w);    // [T, nk*P]
  float* att = ctx.arena->Take(static_cast<size_t>(T) * w);  // [T, nk*P]
  ops::Linear(ctx.threads, u, T, wq_, q);
  ops::Linear(ctx.threads, u, T, wk_, k);
  ops::Linear(ctx.threads, u, T, wv_, v);
  core_.Run(q, k, v, seqs, ctx, [](const SeqSlice& s) -> KvCache& { return *static_cast<SsmLayerState&>(*s.state).kv; },
            att);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < nk; ++h)
      std::memcpy(y + static_cast<size_t>(t) * ldy + heads_[h] * hd_, att + static_cast<size_t>(t) * w + h * hd_,
                  hd_ * sizeof(float));
}

Tensor KeptHeadAttention::Probabilities(const float* u, int L, Tensor* values) const {
  const int nk = n_kept(), w = nk * hd_;
  std::vector<float> q(static_cast<size_t>(L) * w), k(static_cast<size_t>(L) * w);
  const Threads th = Threads::Default();
  ops::Linear(th, u, L, wq_, q.data());
  ops::Linear(th, u, L, wk_, k.data());
  if (values != nullptr) {
    *values = Tensor({L, w});
    ops::Linear(th, u, L, wv_, values->ptr());
  }
  return core_.Probabilities(q.data(), k.data(), L);
}

}  // namespace subq
