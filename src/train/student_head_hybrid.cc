// Kept attention heads of a head-hybrid student layer (student_mixers.h KeptHeads): the engine's
// head-level hybrid (mixers/head_hybrid.h) in torch. Kept head h_k has the teacher's q/k/v rows of head
// h_k (k/v rows of its GQA group), RoPE as the teacher (rotate-half, the teacher's inverse frequencies),
// causal softmax with scale 1/sqrt(P); its output replaces the SSM output of v-head h_k (D skip included)
// before the z gate and out_proj, exactly as the engine combines them. Shapes: B batch, L tokens, D d_model.
#include <fmt/format.h>

#include "train/student_mixers.h"

namespace subq::train {

KeptHeads KeptHeads::FromTeacher(const AttentionParams& t, std::vector<int> kept) {
  torch::NoGradGuard ng;
  KeptHeads k;
  k.heads = std::move(kept);
  const int64_t n = static_cast<int64_t>(k.heads.size()), hd = t.head_dim, group = t.n_heads / t.n_kv_heads;
  std::vector<torch::Tensor> q, kk, v;
  for (int h : k.heads) {
    q.push_back(t.q.narrow(0, h * hd, hd));              // [hd, D]
    kk.push_back(t.k.narrow(0, (h / group) * hd, hd));   // [hd, D]
    v.push_back(t.v.narrow(0, (h / group) * hd, hd));    // [hd, D]
  }
  k.attn.n_heads = k.attn.n_kv_heads = static_cast<int>(n);
  k.attn.head_dim = t.head_dim;
  k.attn.inv_freq = t.inv_freq;
  k.attn.q = torch::cat(q, 0).clone();   // [n*hd, D]
  k.attn.k = torch::cat(kk, 0).clone();  // [n*hd, D]
  k.attn.v = torch::cat(v, 0).clone();   // [n*hd, D]
  k.attn.o = torch::eye(n * hd, t.q.options());  // identity: Attention() then returns the heads' outputs
  k.idx = torch::tensor(std::vector<int64_t>(k.heads.begin(), k.heads.end()), torch::kInt64);
  return k;
}

torch::Tensor KeptHeads::Forward(const torch::Tensor& u) const {
  const int64_t B = u.size(0), L = u.size(1), n = static_cast<int64_t>(heads.size());
  return Attention(attn, u, nullptr).view({B, L, n, attn.head_dim});  // [B, L, n, P]
}

torch::Tensor KeptHeads::Replace(const torch::Tensor& y, const torch::Tensor& u) const {
  return y.index_copy(2, idx, Forward(u).to(y.scalar_type()));  // [B, L, nv, P]
}

torch::Tensor KeptHeads::ReplaceMatrices(const torch::Tensor& M, const torch::Tensor& u, int64_t h0, int64_t nh) const {
  torch::Tensor out = M;
  for (size_t i = 0; i < heads.size(); ++i) {
    const int64_t h = heads[i];
    if (h < h0 || h >= h0 + nh) continue;
    // No gradient: the kept heads' matrices equal the teacher's, so their Frobenius loss is exactly 0 (whose
    // sqrt has no derivative); stage 1 trains only the recurrent heads.
    torch::Tensor p;
    {
      torch::NoGradGuard ng;
      p = AttentionProbs(attn, u, static_cast<int64_t>(i), 1);  // [B, 1, L, L]
    }
    out = out.index_copy(1, torch::tensor({h - h0}, torch::kInt64).to(M.device()), p.to(M.scalar_type()));
  }
  return out;
}

std::vector<NamedTensor> KeptHeads::Params() const {
  return {{"attn_q_proj.weight", attn.q}, {"attn_k_proj.weight", attn.k}, {"attn_v_proj.weight", attn.v}};
}

void KeptHeads::MoveBuffers(const torch::Device& d) {
  attn.o = attn.o.to(d);
  attn.inv_freq = attn.inv_freq.to(d);
  idx = idx.to(d);
}

}  // namespace subq::train
