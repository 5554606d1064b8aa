// Discrete Mamba-2 mixer (SPEC section 3; Phi-Mamba / Llamba student, cartesia-ai/edge `DiscreteMamba2`).
//
//   [xBC | z | A_log] = in_proj(u)           // [L, d_inner + 2*n_qk*N], [L, d_inner], [L, n_v]
//   xBC = causal_conv(xBC) + conv_bias (identity activation) -> [x | B | C]
//   a_t = exp(-softplus(A_log_t)) per v-head; v-head h reads B/C head h / (n_v/n_qk)
//   h_t = a_t h_{t-1} + x_t B_t^T ;  y_t = h_t C_t + D x_t
//   out = out_proj(y * silu(z + z_bias))
//
// Materialize: M[h, i, j] = (C_i . B_j) prod_{k=j+1..i} a_k for i >= j, plus D_h on the diagonal (as MOHAWK
// materialises it for Stage 1), so y = M x exactly. Heads kept as attention in a head-level hybrid layer
// (head_hybrid.h) return their attention probabilities instead.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "mixers/head_hybrid.h"
#include "mixers/ssm_state.h"
#include "ops/ssd.h"
#include "ops/weight.h"
#include "model/layer.h"

namespace subq {

struct DiscreteMamba2Weights {
  ops::Weight in_proj;   // [2*d_inner + 2*n_qk*N + n_v, dim]
  Tensor z_bias;    // [d_inner]
  Tensor conv_w;    // [conv_dim, K] (file: [conv_dim, 1, K])
  Tensor conv_b;    // [conv_dim] (zeros without conv bias)
  Tensor D;         // [n_v]
  ops::Weight out_proj;  // [dim, d_inner]
};

class DiscreteMamba2Mixer : public Mixer {
 public:
  static Result<std::unique_ptr<DiscreteMamba2Mixer>> Load(const ModelConfig& cfg, int layer,
                                                           const TensorStore& store, const std::string& prefix);

  using Mixer::Forward;
  using Mixer::NewState;
  std::unique_ptr<LayerState> NewState(int max_context) const override;
  size_t ScratchFloats(int T, int n_threads) const override;
  void Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* out) const override;
  Tensor Materialize(const float* u, int L) const override;
  int num_heads() const override { return c_.n_v_heads; }
  size_t WeightBytes() const override;

  // For tests: the values the mixing matrix acts on ([L, d_inner]: x after the conv, with kept attention
  // heads' slots holding their v) and the raw z [L, d_inner], from a fresh state.
  void ProjectFresh(const float* u, int L, Tensor* values, Tensor* z) const;
  // For tests: out = out_proj(y * silu(z + z_bias)), y [L, d_inner] already holding the D skip term.
  void ApplyOutput(const float* y, const float* z, int L, float* out) const;

  const DiscreteMamba2Config& config() const { return c_; }
  const DiscreteMamba2Weights& weights() const { return w_; }
  const KeptHeadAttention* kept_heads() const { return kept_.get(); }

 private:
  DiscreteMamba2Mixer(const DiscreteMamba2Config& c, int dim) : c_(c), dim_(dim) {}
  int conv_dim() const { return c_.d_inner() + 2 * c_.n_qk_heads * c_.d_state; }
  int proj_rows() const { return conv_dim() + c_.d_inner() + c_.n_v_heads; }
  ops::SsdDims dims() const { return {c_.n_v_heads, c_.head_dim, c_.d_state, c_.n_qk_heads}; }
  // Conv + decays for one sequence's n rows of proj [n, rows]: xbc [n, conv_dim], loga [n, n_v].
  void ConvAndDecay(const float* proj, int n, float* conv_state, float* xbc, float* loga) const;
  // For tools/tests: in_proj + ConvAndDecay of L tokens from a fresh state.
  void PrepareFresh(const float* u, int L, std::vector<float>& proj, std::vector<float>& xbc,
                    std::vector<float>& loga) const;
  void ApplyOutputInPlace(const Threads& th, float* y, const float* z, int ldz, int L, float* out) const;

  DiscreteMamba2Config c_;
  int dim_;
  bool bf16_state_ = false;  // ModelConfig::bf16_state
  DiscreteMamba2Weights w_;
  std::unique_ptr<KeptHeadAttention> kept_;  // null unless the layer keeps attention heads
};

}  // namespace subq
