// Head-level hybrid (SPEC section 6, retrieval-aware distillation): a Discrete Mamba-2 layer keeps a few
// individual softmax-attention heads and runs them in parallel with its SSM heads.
//
// Layout (the trainer exports students exactly so): LayerConfig::attention_heads lists the kept v-heads
// h_0, h_1, ... (n_kept distinct ones, in the order of the weight rows; each of the mixer's head_dim P).
// Under the mixer prefix:
//   attn_q_proj.weight  [n_kept*P, dim]   rows k*P..(k+1)*P-1 belong to kept head h_k
//   attn_k_proj.weight  [n_kept*P, dim]
//   attn_v_proj.weight  [n_kept*P, dim]
// Each kept head computes q, k, v from the mixer input u (the normalised residual), rotate-half RoPE
// (theta = cfg.attn.rope_theta, llama3 scaling if cfg.attn.rope_scaling says so) on q and k, causal
// softmax attention with scale 1/sqrt(P). Its output REPLACES that head's SSM output y_h (the D skip
// included) before the z gate and out_proj; in_proj, conv and out_proj keep their full sizes, and the
// SSM still runs on every head (the kept heads' SSM outputs are discarded).
// The layer state holds a KV cache for the kept heads only. Materialize returns, for kept heads, the
// attention probabilities (y_h = A v_h).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "mixers/attention.h"
#include "model/layer.h"

namespace subq {

class KeptHeadAttention {
 public:
  // heads: the kept v-head indices (validated against n_v_heads); head_dim: the mixer's P.
  static Result<std::unique_ptr<KeptHeadAttention>> Load(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                         const std::string& prefix, int n_v_heads, int head_dim);

  const std::vector<int>& heads() const { return heads_; }
  int n_kept() const { return static_cast<int>(heads_.size()); }
  KvCache NewCache(int max_context) const { return KvCache(n_kept(), hd_, max_context); }
  size_t ScratchFloats(int T, int n_threads) const;
  size_t WeightBytes() const { return wq_.Bytes() + wk_.Bytes() + wv_.Bytes(); }

  // u [T, dim]: the stacked rows of `seqs`, whose states are SsmLayerStates holding the kept heads' KV
  // cache; appends to each cache and writes kept head k's output into y + t*ldy + heads()[k]*P.
  void Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* y, int ldy) const;
  // From a fresh cache: attention probabilities [n_kept, L, L]; values v [L, n_kept*P] if not null.
  Tensor Probabilities(const float* u, int L, Tensor* values) const;

 private:
  KeptHeadAttention() = default;

  std::vector<int> heads_;
  int hd_ = 0, dim_ = 0;
  AttentionCore core_;
  ops::Weight wq_, wk_, wv_;  // [n_kept*P, dim]
};

}  // namespace subq
