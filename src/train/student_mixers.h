// The student mixers, one file each (student_dm2.cc, student_mamba2.cc, student_mamba3.cc,
// student_gated_deltanet.cc, student_attention.cc). Each holds its init (random, or from the teacher's
// attention when `attn` is given: FromTeacher checks the dims), forward and materialised mixing matrix,
// with the math of the engine's mixer of the same kind so an exported student runs there unchanged.
#pragma once
#include <memory>

#include "train/recipe.h"
#include "train/student.h"
#include "train/torch_math.h"

namespace subq::train {

// Discrete Mamba-2 (SPEC 3, Llamba layout).
std::unique_ptr<StudentMixer> MakeDm2Mixer(int d_model, const StudentRecipe& s, const AttentionParams* attn = nullptr);
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
// A kept teacher attention layer (layer hybrids): the teacher's q/k/v/o, copied.
std::unique_ptr<StudentMixer> MakeAttentionMixer(const AttentionParams& teacher_attn);

}  // namespace subq::train
