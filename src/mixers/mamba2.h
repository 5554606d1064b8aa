// Mamba-2 / SSD mixer (SPEC section 2; state-spaces/mamba `Mamba2`, HF `Mamba2Mixer`).
//
//   [z | xBC | dt] = in_proj(u)                       // [L, d_inner], [L, conv_dim], [L, H]
//   xBC = silu(causal_conv(xBC) + conv_bias) -> [x | B | C]
//   dt = softplus(dt + dt_bias); A = -exp(A_log)
//   S_t = exp(dt A) S_{t-1} + dt x_t B_t^T ;  y_t = S_t C_t + D x_t     (head h reads group h / (H/G))
//   out = out_proj(RMSNorm_grouped(y * silu(z)) * norm.weight)         (gate BEFORE the norm)
//
// Gated norm: mamba_ssm normalises each group of d_inner/G channels separately. transformers releases
// before PR #40861 (Sept 2025) normalised over all of d_inner; 5.x groups like mamba_ssm (checked on
// 5.24: MambaRMSNormGated gets group_size = d_inner/n_groups). Mamba2Config::norm_grouped selects; the
// config parser sets it (grouped for both origins, since the checkpoints were trained grouped).
//
// Materialize returns M[h, i, j] = (C_i . B_j) exp(sum_{k=j+1..i} dt_k A_h) dt_j (i >= j) plus D_h on the
// diagonal, so y = M x exactly (one definition for every mixer and for the trainer: model/schema.h).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "mixers/ssm_state.h"
#include "ops/ssd.h"
#include "ops/weight.h"
#include "model/layer.h"

namespace subq {

struct Mamba2Weights {
  ops::Weight in_proj;   // [2*d_inner + 2*G*N + H, dim]
  Tensor conv_w;    // [conv_dim, K] (file: [conv_dim, 1, K])
  Tensor conv_b;    // [conv_dim] (zeros when the file has no conv1d.bias)
  Tensor dt_bias;   // [H]
  Tensor A_log;     // [H]
  Tensor D;         // [H]
  Tensor norm_w;    // [d_inner]
  ops::Weight out_proj;  // [dim, d_inner]
};

class Mamba2Mixer : public Mixer {
 public:
  static Result<std::unique_ptr<Mamba2Mixer>> Load(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                   const std::string& prefix);

  using Mixer::Forward;
  using Mixer::NewState;
  std::unique_ptr<LayerState> NewState(int max_context) const override;
  size_t ScratchFloats(int T, int n_threads) const override;
  void Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* out) const override;
  Tensor Materialize(const float* u, int L) const override;
  int num_heads() const override { return c_.n_heads; }
  size_t WeightBytes() const override;

  // For tests: x (post conv) and z of u from a fresh state, each [L, d_inner].
  void ProjectFresh(const float* u, int L, Tensor* x, Tensor* z) const;
  // For tests: out = out_proj(norm(y * silu(z))) where y [L, d_inner] already holds the D skip term.
  void ApplyOutput(const float* y, const float* z, int L, float* out) const;

  const Mamba2Config& config() const { return c_; }
  const Mamba2Weights& weights() const { return w_; }
  int dim() const { return dim_; }

 private:
  Mamba2Mixer(const Mamba2Config& c, int dim) : c_(c), dim_(dim) {}
  int conv_dim() const { return c_.d_inner() + 2 * c_.n_groups * c_.state_size; }
  int proj_rows() const { return 2 * c_.d_inner() + 2 * c_.n_groups * c_.state_size + c_.n_heads; }
  ops::SsdDims dims() const { return {c_.n_heads, c_.head_dim, c_.state_size, c_.n_groups}; }
  // Conv + dt for one sequence's n rows of proj [n, rows]: xbc [n, conv_dim], dt/loga [n, H].
  void ConvAndDt(const float* proj, int n, float* conv_state, float* xbc, float* dt, float* loga) const;
  // For tools/tests: in_proj + ConvAndDt of L tokens from a fresh state.
  void PrepareFresh(const float* u, int L, std::vector<float>& proj, std::vector<float>& xbc, std::vector<float>& dt,
                    std::vector<float>& loga) const;
  // Gate, gated norm (in place on y [L, d_inner]; z rows of stride ldz) and out_proj.
  void ApplyOutputInPlace(const Threads& th, float* y, const float* z, int ldz, int L, float* out) const;

  Mamba2Config c_;
  int dim_;
  bool bf16_state_ = false;  // ModelConfig::bf16_state
  Mamba2Weights w_;
};

}  // namespace subq
