// Kept attention heads of a head-level hybrid Discrete Mamba-2 layer (see head_hybrid.h).
#include "mixers/head_hybrid.h"

#include <algorithm>
#include <cstring>

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
  a->inv_freq_ = RopeInvFreq(rope);
  const int64_t rows = static_cast<int64_t>(heads.size()) * head_dim, d = cfg.dim;
  SUBQ_ASSIGN_OR_RETURN(a->wq_, store.Load(prefix + "attn_q_proj.weight", {rows, d}));
  SUBQ_ASSIGN_OR_RETURN(a->wk_, store.Load(prefix + "attn_k_proj.weight", {rows, d}));
  SUBQ_ASSIGN_OR_RETURN(a->wv_, store.Load(prefix + "attn_v_proj.weight", {rows, d}));
  return a;
}

void KeptHeadAttention::Project(const float* u, int L, int pos, float* q, float* k, float* v) const {
  const int nk = n_kept(), w = nk * hd_;
  ops::Linear(u, wq_.ptr(), q, L, dim_, w);  // [L, nk*P]
  ops::Linear(u, wk_.ptr(), k, L, dim_, w);  // [L, nk*P]
  ops::Linear(u, wv_.ptr(), v, L, dim_, w);  // [L, nk*P]
  for (int t = 0; t < L; ++t) {
    ApplyRope(q + static_cast<size_t>(t) * w, nk, hd_, pos + t, inv_freq_, /*interleaved=*/false);
    ApplyRope(k + static_cast<size_t>(t) * w, nk, hd_, pos + t, inv_freq_, /*interleaved=*/false);
  }
}

void KeptHeadAttention::Forward(const float* u, int L, int pos, KvCache& cache, float* y, int ldy) {
  const int nk = n_kept(), w = nk * hd_;
  q_.resize(static_cast<size_t>(L) * w);
  att_.resize(static_cast<size_t>(L) * w);
  cache.Reserve(L);
  Project(u, L, pos, q_.data(), cache.k_at(cache.len()), cache.v_at(cache.len()));
  AttendCausal(q_.data(), L, nk, nk, hd_, cache, att_.data());  // [L, nk*P]
  cache.Advance(L);
  for (int t = 0; t < L; ++t)
    for (int k = 0; k < nk; ++k)
      std::memcpy(y + static_cast<size_t>(t) * ldy + heads_[k] * hd_, att_.data() + static_cast<size_t>(t) * w + k * hd_,
                  hd_ * 4);
}

Tensor KeptHeadAttention::Probabilities(const float* u, int L, Tensor* values) const {
  const int nk = n_kept(), w = nk * hd_;
  KvCache cache = NewCache();
  cache.Reserve(L);
  std::vector<float> q(static_cast<size_t>(L) * w), att(static_cast<size_t>(L) * w);
  Project(u, L, 0, q.data(), cache.k_at(0), cache.v_at(0));
  Tensor probs({nk, L, L});
  AttendCausal(q.data(), L, nk, nk, hd_, cache, att.data(), probs.ptr());
  if (values != nullptr) {
    *values = Tensor({L, w});
    std::memcpy(values->ptr(), cache.v_at(0), static_cast<size_t>(L) * w * 4);
  }
  return probs;
}

}  // namespace subq
