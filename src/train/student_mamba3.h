// Mamba-3 student mixer (SPEC 4; mamba_ssm Mamba3 names; engine: mixers/mamba3.h): exponential-trapezoidal
// SSM with the data-dependent rotary (complex) state, SISO (mimo_rank 1) or MIMO rank R, optional output
// norm, rope_fraction 0.5 or 1.0. Exposed (not only through MakeMamba3Mixer) so tests can reach the
// token recurrence and the pre-gate output. Shapes: B batch, L tokens, D d_model, H heads, R ranks,
// P head dim, N state size, NA rotary angles.
//
// Forward (training) is chunked: per chunk of the scan, every token contributes 2R keys (gamma_t k_{t,r}
// with value x_t * mimo_x[r], beta_t k_{t-1,r} with value x_{t-1} * mimo_x[r]) and R queries q_{t,r} to
// one P x N state per head; no loop over tokens.
//
// Materialize (stage 1): the L x L map of each head from x to the rank-summed pre-gate output
// sum_r mimo_o[r] * y_r (D skip included, on the diagonal) when mimo_x/mimo_o are constant along P:
//   M[t,s] = (qbar_t . kbar_s) * decay(t,s) * (lambda_s dt_s + (1-lambda_{s+1}) dt_{s+1})   (s < t)
//   with qbar = sum_r mean_p(mimo_o[h,r]) q_r, kbar = sum_r mean_p(mimo_x[h,r]) k_r,
//   M[t,t] += D * sum_r mean_p(mimo_o[h,r]) mean_p(mimo_x[h,r]),
// the definition of the engine's Mamba3Mixer::Materialize (per-channel MIMO weights averaged over P).
// SISO: qbar = q, kbar = k (exact).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "train/recipe.h"
#include "train/student.h"
#include "train/torch_math.h"

namespace subq::train {

// Multi-key, multi-query scalar-decay SSD in chunks of `chunk`: per head one P x N state,
//   S_t = exp(loga_t) S_{t-1} + sum_k v_{t,k} key_{t,k}^T,   y_{t,r} = S_t q_{t,r}.
// v [B,L,H,K,P], loga [B,L,H], keys [B,L,H,K,N], q [B,L,H,R,N] -> y [B,L,H,R,P].
torch::Tensor SsdMultiChunked(const torch::Tensor& v, const torch::Tensor& loga, const torch::Tensor& keys,
                              const torch::Tensor& q, int64_t chunk);

class Mamba3Student : public StudentMixer {
 public:
  Mamba3Student(int d_model, const StudentRecipe& s);
  // x <- W_v, B <- W_k (kv heads repeated), C <- W_q, out_proj <- W_o (G = H, N = P = teacher head_dim).
  // MIMO: rank 0 gets the teacher rows; ranks r > 0 the same rows plus noise (0.1 x their std) so that
  // the ranks are not symmetric (identical ranks would get identical gradients forever).
  void InitFromAttention(const AttentionParams& a);

  struct Proj {
    torch::Tensor z, x;               // [B, L, H, P]
    torch::Tensor q, k;               // [B, L, H, R, N] rotated C and B
    torch::Tensor adt, gamma, beta;   // [B, L, H]: A dt, lambda dt, (1 - lambda) dt exp(A dt)
  };
  Proj Project(const torch::Tensor& u) const;
  // Per-rank pre-gate outputs with the D skip, y [B, L, H, R, P]: chunked, or by the token recurrence.
  torch::Tensor RankOutputs(const Proj& p) const;
  torch::Tensor RankOutputsRecurrent(const Proj& p) const;
  // y [B, L, H, R, P], z [B, L, H, P] -> output norm, gate, mimo_o, rank sum -> [B, L, H*P].
  torch::Tensor Combine(const torch::Tensor& y, const torch::Tensor& z) const;
  // sum_r mimo_o[r] * y_r (with the D skip): what Materialize maps x to, [B, L, H, P].
  torch::Tensor PreGate(const torch::Tensor& u) const;
  torch::Tensor ForwardRecurrent(const torch::Tensor& u) const;  // token loop (test oracle)

  torch::Tensor Forward(const torch::Tensor& u) const override;
  torch::Tensor Materialize(const torch::Tensor& u) const override;
  std::vector<NamedTensor> Params() const override;
  int num_heads() const override { return H_; }

  int64_t d_inner() const { return static_cast<int64_t>(H_) * P_; }
  int64_t rows() const { return 2 * d_inner() + 2 * static_cast<int64_t>(G_) * R_ * N_ + 3 * H_ + NA_; }

  torch::Tensor in_proj, dt_bias, Dp, B_norm, C_norm, B_bias, C_bias, out_proj;
  torch::Tensor mimo_x, mimo_z, mimo_o;  // [H, R, P]; undefined for SISO
  torch::Tensor norm;                    // [H*P]; undefined without the output norm

 private:
  torch::Tensor Rotate(const torch::Tensor& v, const torch::Tensor& cos, const torch::Tensor& sin) const;
  torch::Tensor Values(const Proj& p) const;  // x * mimo_x -> [B, L, H, R, P]
  int D_, H_, P_, N_, G_, R_, NA_;
  bool out_norm_;
};

}  // namespace subq::train
