// Torch math shared by the teacher and the students (exposed for tests): norms, SwiGLU, the causal conv,
// scalar-decay SSD in three forms, the gated delta rule, and softmax attention with rotate-half RoPE and GQA.
// All RoPE here is HF rotate-half (interleaved checkpoints are un-permuted when the teacher is built).
// Shapes: B batch, L tokens, D d_model, H heads, P head dim, N state size.
#pragma once
#include <torch/torch.h>

#include <string>

#include "model/config.h"

namespace subq::train {

struct NamedTensor {
  std::string name;  // name in the exported checkpoint
  torch::Tensor t;
};

// bf16/f16 tensors (autocast outputs) as f32; others unchanged. Decays, softmaxes and losses use it.
torch::Tensor AtLeastF32(const torch::Tensor& t);
torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps);  // over the last dim
torch::Tensor L2Norm(const torch::Tensor& x);  // fla l2norm over the last dim: x / sqrt(sum x^2 + 1e-6)
torch::Tensor SwiGlu(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& up,
                     const torch::Tensor& down);
// segsum(a)[..., i, j] = a[j+1] + ... + a[i] for i >= j, -inf above the diagonal. a: [..., T] -> [..., T, T].
torch::Tensor SegSum(const torch::Tensor& a);
// exp(segsum(a)) from differences of one cumsum (exact enough inside a chunk). a: [..., T] -> [..., T, T].
torch::Tensor ExpSegSumFast(const torch::Tensor& a);
// Depthwise causal conv over time: x [B, L, C], w [C, 1, K], b [C] -> [B, L, C].
torch::Tensor CausalConv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);
// Scalar-decay SSD (Mamba-2 / DM2 core) in chunks of Q: x [B,L,H,P], loga [B,L,H] (log decay <= 0),
// Bm, Cm [B,L,H,N]. y_t = sum_{s<=t} (C_t . B_s) exp(sum_{r=s+1..t} loga_r) x_s -> [B,L,H,P].
torch::Tensor SsdChunked(const torch::Tensor& x, const torch::Tensor& loga, const torch::Tensor& Bm,
                         const torch::Tensor& Cm, int64_t chunk);
// The same as an explicit [B,H,L,L] matrix M[t,s] (no D term).
torch::Tensor SsdMatrix(const torch::Tensor& loga, const torch::Tensor& Bm, const torch::Tensor& Cm);
// The same by the plain recurrence h_t = a_t h_{t-1} + x_t B_t^T, y_t = h_t C_t (test oracle).
torch::Tensor SsdRecurrent(const torch::Tensor& x, const torch::Tensor& loga, const torch::Tensor& Bm,
                           const torch::Tensor& Cm);
// The gated delta rule by its token recurrence, per v-head:
//   S_t = exp(g_t) S_{t-1};  S_t += beta_t k_t (v_t - S_t^T k_t)^T;  o_t = S_t^T q_t.
// q, k [B, L, H, dk] (already repeated to the v-heads), v [B, L, H, dv], g, beta [B, L, H] -> o [B, L, H, dv].
torch::Tensor GatedDeltaRule(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& g, const torch::Tensor& beta);

// Softmax attention with rotate-half RoPE and GQA.
struct AttentionParams {
  torch::Tensor q, k, v, o;  // [H*hd, D], [Hkv*hd, D], [Hkv*hd, D], [D, H*hd]
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  torch::Tensor inv_freq;  // [hd/2] (f64 on CPU; llama3 scaling already applied)
};
torch::Tensor InvFreq(const AttentionConfig& a);
// u [B, L, D] -> [B, L, D]; with probs, also writes the attention probabilities [B, H, L, L].
torch::Tensor Attention(const AttentionParams& p, const torch::Tensor& u, torch::Tensor* probs);
// The attention probabilities of heads [h0, h0 + nh) only: u [B, L, D] -> [B, nh, L, L].
torch::Tensor AttentionProbs(const AttentionParams& p, const torch::Tensor& u, int64_t h0, int64_t nh);

}  // namespace subq::train
