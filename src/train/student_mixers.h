// The student mixers, one file each (student_dm2.cc, student_mamba2.cc, student_mamba3.cc,
// student_gated_deltanet.cc, student_attention.cc). Each holds its init (random, or from the teacher's
// attention when `attn` is given: FromTeacher checks the dims), forward and materialised mixing matrix,
// with the math of the engine's mixer of the same kind so an exported student runs there unchanged.
#pragma once
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "train/recipe.h"
#include "train/student.h"
#include "train/torch_math.h"

namespace subq::train {

// The kept softmax-attention heads of a head-hybrid layer (student_head_hybrid.cc): teacher q/k/v rows of
// the kept heads, combined as the engine's head hybrid does (each replaces its v-head's SSM output).
struct KeptHeads {
  std::vector<int> heads;  // kept v-heads, in weight-row order
  torch::Tensor idx;       // the same as an index tensor
  AttentionParams attn;    // n_kept heads (no GQA), o = identity (not a parameter)
  static KeptHeads FromTeacher(const AttentionParams& teacher, std::vector<int> heads);
  torch::Tensor Forward(const torch::Tensor& u) const;                             // [B, L, D] -> [B, L, n, P]
  torch::Tensor Replace(const torch::Tensor& y, const torch::Tensor& u) const;     // y [B, L, nv, P] with kept heads
  // Mixing matrices of heads [h0, h0 + nh) [B, nh, L, L] with the kept heads' attention probabilities.
  torch::Tensor ReplaceMatrices(const torch::Tensor& M, const torch::Tensor& u, int64_t h0, int64_t nh) const;
  std::vector<NamedTensor> Params() const;  // attn_{q,k,v}_proj.weight (engine names, mixer prefix)
  void MoveBuffers(const torch::Device& d);
};

// Discrete Mamba-2 (SPEC 3, Llamba layout). With `kept` heads (and the teacher's attention of this
// layer), a head hybrid: those heads run as softmax attention (KeptHeads).
std::unique_ptr<StudentMixer> MakeDm2Mixer(int d_model, const StudentRecipe& s, const AttentionParams* attn = nullptr,
                                           const AttentionParams* teacher_attn = nullptr,
                                           std::vector<int> kept = {});
// Mamba-2 (SPEC 2, HF layout; gated norm per group). `eps` is the gated norm epsilon.
std::unique_ptr<StudentMixer> MakeMamba2Mixer(int d_model, const StudentRecipe& s, double eps,
                                              const AttentionParams* attn);
// Gated DeltaNet (SPEC 5, fla layout): n_qk_heads q/k heads of head_dim, n_v_heads v-heads of d_state
// (head_v_dim); conv_kernel short convs; GQA k/v rows repeated on attention init. `eps` is the o_norm epsilon.
std::unique_ptr<StudentMixer> MakeGatedDeltaNetMixer(int d_model, const StudentRecipe& s, double eps,
                                                     const AttentionParams* attn);
// Mamba-3 (SPEC 4, mamba_ssm names; student_mamba3.h): SISO or MIMO rank mimo_rank, optional output norm,
// rope_fraction 0.5 / 1.0; n_v_heads heads of head_dim, d_state N, n_groups B/C groups. Attention init maps x/B/C/out_proj to the teacher's
// v/k/q/o (needs n_groups = n_v_heads = teacher heads, head_dim = d_state = teacher head_dim).
std::unique_ptr<StudentMixer> MakeMamba3Mixer(int d_model, const StudentRecipe& s, const AttentionParams* attn);
// Oryx (student_oryx.cc, engine mixers/oryx.h): the mode mask shared by a student's Oryx layers.
struct OryxModes {
  double attention_fraction = 0.1;  // training: mean fraction of a batch's tokens in attention mode
  torch::Tensor fixed;              // [L] bool (true = attention): when defined, every forward uses it
  torch::Tensor current;            // the current batch's mask (drawn by layer 0 in training)
};
// The teacher's q/k/v/o (copied) plus the recurrent extras at SPEC init; recurrence s.oryx_recurrence.
std::unique_ptr<StudentMixer> MakeOryxMixer(const StudentRecipe& s, const AttentionParams& teacher_attn, int layer,
                                            std::shared_ptr<OryxModes> modes);
// A kept teacher attention layer (layer hybrids): the teacher's q/k/v/o, copied.
std::unique_ptr<StudentMixer> MakeAttentionMixer(const AttentionParams& teacher_attn);

}  // namespace subq::train
