// Recurrent students beyond Mamba-2: Gated DeltaNet (SPEC 5, fla layout) and Mamba-3 SISO (SPEC 4). The
// math equals the engine's mixers/gated_deltanet.cc and mixers/mamba3.cc, so an exported student runs in
// the engine unchanged.
#pragma once
#include <torch/torch.h>

#include <memory>

#include "train/modules.h"
#include "train/recipe.h"

namespace subq::train {

// The gated delta rule by its token recurrence, per v-head:
//   S_t = exp(g_t) S_{t-1};  S_t += beta_t k_t (v_t - S_t^T k_t)^T;  o_t = S_t^T q_t.
// q, k [B, L, H, dk] (already repeated to the v-heads), v [B, L, H, dv], g, beta [B, L, H] -> o [B, L, H, dv].
torch::Tensor GatedDeltaRule(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& g, const torch::Tensor& beta);

// Gated DeltaNet mixer with recipe dims: n_qk_heads q/k heads of head_dim, n_v_heads v-heads of d_state
// (head_v_dim); conv_kernel short convs. Random init (fla defaults) or, with `attn`, q/k/v/o projections
// copied from the teacher attention (GQA k/v rows repeated). `eps` is the o_norm epsilon.
std::unique_ptr<StudentMixer> MakeGatedDeltaNetMixer(int d_model, const StudentRecipe& s, double eps,
                                                     const AttentionParams* attn);

// Mamba-3 SISO mixer (mamba_ssm names, rope_fraction 0.5, no output norm): n_v_heads heads of head_dim,
// d_state N (multiple of 4), n_groups B/C groups. Random init or, with `attn`, x/B/C/out_proj from the
// teacher's v/k/q/o (needs n_groups = n_v_heads = teacher heads, head_dim = d_state = teacher head_dim).
std::unique_ptr<StudentMixer> MakeMamba3Mixer(int d_model, const StudentRecipe& s, const AttentionParams* attn);

}  // namespace subq::train
