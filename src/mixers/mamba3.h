// Mamba-3 mixer (SPEC section 4; state-spaces/mamba `Mamba3`): exponential-trapezoidal SSM with a
// data-dependent rotary (complex) state, SISO or MIMO rank R, no conv.
//
// Tensors under the mixer prefix (names and shapes of mamba_ssm's Mamba3 module):
//   in_proj.weight  [2*d_inner + 2*G*R*N + 3*H + n_angles, d_model]  rows [z, x, B, C, dd_dt, dd_A, trap, angle]
//   dt_bias [H]; D [H]; B_norm.weight [N]; C_norm.weight [N]; B_bias [H, R, N]; C_bias [H, R, N]
//   mimo_x, mimo_z, mimo_o [H, R, P]   (MIMO only, R > 1)
//   norm.weight [d_inner]              (only when Mamba3Config::output_norm; RMSNorm per head, before gate)
//   out_proj.weight [d_model, d_inner]
// B/C columns are laid out (r, g, n). Head h reads group h / (H/G).
// Rotation: SISO rotates interleaved pairs (2i, 2i+1); MIMO rotates half-split pairs (i, i + N/2),
// i < n_angles in both cases (as the reference SISO and MIMO kernels do).
//
// Materialize: for SISO the exact L x L map x -> (pre-gate, pre-norm) y of each head, D skip included on
// the diagonal (y = M x; the same quantity for every mixer and the trainer).
// For MIMO the rank pairs are summed with weights mean_p(mimo_o[h,r']) * mean_p(mimo_x[h,r]), which is
// exact when mimo_x/mimo_o are constant along the head dim and mimo_z is equal across ranks (no output
// norm); in general it is the head's mixing matrix with the per-channel MIMO weights averaged.
#pragma once
#include <memory>
#include <vector>

#include "model/layer.h"

namespace subq {

struct Mamba3Weights {
  Tensor in_proj;                 // [rows, d_model]
  Tensor dt_bias, D;              // [H]
  Tensor B_norm, C_norm;          // [N]
  Tensor B_bias, C_bias;          // [H, R, N]
  Tensor mimo_x, mimo_z, mimo_o;  // [H, R, P]; empty for SISO (then all ones)
  Tensor norm;                    // [d_inner]; empty without output norm
  Tensor out_proj;                // [d_model, d_inner]
};

// Decode cache of one layer (SPEC: phase, ssm state, last rotated k, last x).
class Mamba3State : public LayerState {
 public:
  Mamba3State(const Mamba3Config& c)
      : phase({c.n_heads, c.n_angles()}),
        ssm({c.n_heads, c.head_dim, c.state_size}),
        k_last({c.mimo_rank, c.n_heads, c.state_size}),
        x_last({c.n_heads, c.head_dim}) {}
  std::unique_ptr<LayerState> Clone() const override { return std::make_unique<Mamba3State>(*this); }
  size_t Bytes() const override {
    return sizeof(float) * (phase.numel() + ssm.numel() + k_last.numel() + x_last.numel());
  }
  Tensor phase;   // [H, n_angles] accumulated dt * theta
  Tensor ssm;     // [H, P, N]
  Tensor k_last;  // [R, H, N] rotated k of the previous token
  Tensor x_last;  // [H, P] x of the previous token (before mimo_x)
};

class Mamba3Mixer : public Mixer {
 public:
  Mamba3Mixer(const Mamba3Config& cfg, int d_model, Mamba3Weights w);
  // Checks every weight's shape against the config; the error names the tensor and both shapes.
  static Status ValidateConfig(const Mamba3Config& cfg, int d_model);
  static Status Validate(const Mamba3Config& cfg, int d_model, const Mamba3Weights& w);
  static int InProjRows(const Mamba3Config& cfg, int d_model);

  using Mixer::Forward;
  using Mixer::NewState;
  std::unique_ptr<LayerState> NewState(int) const override { return std::make_unique<Mamba3State>(cfg_); }
  size_t ScratchFloats(int T, int n_threads) const override;
  void Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* out) const override;
  Tensor Materialize(const float* u, int L) const override;
  int num_heads() const override { return cfg_.n_heads; }
  size_t WeightBytes() const override;
  const Mamba3Config& config() const { return cfg_; }
  const Mamba3Weights& weights() const { return w_; }

  // Per-token quantities after in_proj, norms, biases and rotation (shared by all three forms).
  struct Tokens {
    int L = 0;
    std::vector<float> z, x;                 // [L, H, P]
    std::vector<float> q, k;                 // [L, R, H, N] rotated C and B
    std::vector<float> dt, adt, lam;         // [L, H]
    std::vector<float> proj, bn, cn, theta;  // scratch: in_proj rows, normalised B/C, angles
  };
  // From in_proj rows proj [L, rows]; advances `phase` ([H, n_angles]) over the L tokens.
  void PrepareRows(const float* proj, int L, float* phase, Tokens* t) const;
  // Same from u [L, d_model] (projects first; tools and tests).
  void Prepare(const float* u, int L, float* phase, Tokens* t) const;
  // The recurrence over t's tokens (one step, or the chunked scan), advancing st; o [L, d_inner] is the
  // gated (normed) rank-summed output before out_proj.
  void Step(const Tokens& t, Mamba3State& st, float* o) const;
  void Prefill(const Tokens& t, Mamba3State& st, float* o) const;
  // y [R, H, P] (pre-gate, with D skip) and z [H, P] -> gated, optionally normed, rank-summed o [H, P].
  void Output(const float* y, const float* z, float* o) const;

 private:
  Mamba3Config cfg_;
  int d_model_;
  Mamba3Weights w_;
  std::vector<float> ones_;  // [H, R, P] for SISO mimo weights
  const float *mx_, *mz_, *mo_;
};

}  // namespace subq
