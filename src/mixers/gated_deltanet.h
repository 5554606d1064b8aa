// Gated DeltaNet mixer (SPEC section 5; fla `GatedDeltaNet`, the linear attention of Qwen3-Next).
//
// Tensors under the mixer prefix (fla names; Ck = n_qk_heads * head_k_dim, Cv = n_v_heads * head_v_dim):
//   q_proj.weight [Ck, d_model]; k_proj.weight [Ck, d_model]; v_proj.weight [Cv, d_model]
//   a_proj.weight [Hv, d_model]; b_proj.weight [Hv, d_model]; A_log [Hv]; dt_bias [Hv]
//   q_conv1d.weight [Ck, 1, K]; k_conv1d.weight [Ck, 1, K]; v_conv1d.weight [Cv, 1, K]  (no bias, SiLU after)
//   g_proj.weight [Cv, d_model]; o_norm.weight [head_v_dim]; o_proj.weight [d_model, Cv]
// GVA: when n_v_heads > n_qk_heads, v-head h reads q/k head h / (n_v_heads / n_qk_heads).
// Materialize returns, per v-head, the L x L matrix M with o = M v (before the output norm and gate).
#pragma once
#include <memory>
#include <vector>

#include "model/layer.h"

namespace subq {

struct GatedDeltaNetWeights {
  Tensor q_proj, k_proj, v_proj;  // [Ck, d], [Ck, d], [Cv, d]
  Tensor a_proj, b_proj;          // [Hv, d]
  Tensor A_log, dt_bias;          // [Hv]
  Tensor q_conv, k_conv, v_conv;  // [Ck, 1, K], [Ck, 1, K], [Cv, 1, K]
  Tensor g_proj;                  // [Cv, d]
  Tensor o_norm;                  // [head_v_dim]
  Tensor o_proj;                  // [d, Cv]
};

// Per-sequence state: the last K-1 pre-conv inputs of q, k, v and the delta-rule state S per v-head.
class GatedDeltaNetState : public LayerState {
 public:
  explicit GatedDeltaNetState(const GatedDeltaNetConfig& c)
      : q_conv({c.conv_kernel - 1, c.n_qk_heads * c.head_k_dim}),
        k_conv({c.conv_kernel - 1, c.n_qk_heads * c.head_k_dim}),
        v_conv({c.conv_kernel - 1, c.n_v_heads * c.head_v_dim}),
        S({c.n_v_heads, c.head_k_dim, c.head_v_dim}) {}
  std::unique_ptr<LayerState> Clone() const override { return std::make_unique<GatedDeltaNetState>(*this); }
  size_t Bytes() const override {
    return sizeof(float) * (q_conv.numel() + k_conv.numel() + v_conv.numel() + S.numel());
  }
  Tensor q_conv, k_conv, v_conv;  // [K-1, C] oldest first
  Tensor S;                       // [Hv, d_k, d_v]
};

class GatedDeltaNetMixer : public Mixer {
 public:
  GatedDeltaNetMixer(const GatedDeltaNetConfig& cfg, int d_model, GatedDeltaNetWeights w);
  static Status ValidateConfig(const GatedDeltaNetConfig& cfg, int d_model);
  // Checks every weight's shape against the config; the error names the tensor and both shapes.
  static Status Validate(const GatedDeltaNetConfig& cfg, int d_model, const GatedDeltaNetWeights& w);

  using Mixer::Forward;
  using Mixer::NewState;
  std::unique_ptr<LayerState> NewState(int) const override { return std::make_unique<GatedDeltaNetState>(cfg_); }
  size_t ScratchFloats(int T, int n_threads) const override;
  void Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* out) const override;
  Tensor Materialize(const float* u, int L) const override;
  int num_heads() const override { return cfg_.n_v_heads; }
  size_t WeightBytes() const override;
  const GatedDeltaNetConfig& config() const { return cfg_; }
  const GatedDeltaNetWeights& weights() const { return w_; }

  // Per-token inputs of the delta rule after projections, convs, L2 norm and gates.
  struct Tokens {
    int L = 0;
    std::vector<float> q, k;             // [L, Hk, dk] (q scaled by 1/sqrt(dk))
    std::vector<float> v, gate;          // [L, Hv, dv] (gate = g_proj output, before silu)
    std::vector<float> g, beta;          // [L, Hv] log decay, write strength
    std::vector<float> conv_buf, zeros;  // scratch
  };
  // The six input projections of T rows: q, k [T, Ck], v, gate [T, Cv], g, beta [T, Hv].
  struct Projected {
    float *q, *k, *v, *gate, *g, *beta;
  };
  void Project(const Threads& th, const float* u, int T, const Projected& p) const;
  // Rows row0..row0+L-1 of p -> t. Advances the conv states in `st` when given (nullptr: from zeros,
  // state untouched).
  void Prepare(const Projected& p, int row0, int L, GatedDeltaNetState* st, Tokens* t) const;
  // Same from u [L, d_model] (projects first; tools and tests).
  void Prepare(const float* u, int L, GatedDeltaNetState* st, Tokens* t) const;
  // The delta rule over t's tokens: one step, or the chunked WY form; o [L, Hv, dv].
  void Step(const Tokens& t, GatedDeltaNetState& st, float* o) const;
  void Prefill(const Tokens& t, GatedDeltaNetState& st, float* o) const;
  // o [L, Hv, dv] -> RMSNorm per head * silu(gate), in place.
  void NormGate(const Tokens& t, float* o) const;

 private:
  GatedDeltaNetConfig cfg_;
  int d_model_;
  GatedDeltaNetWeights w_;
};

}  // namespace subq
