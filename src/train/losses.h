// MOHAWK stage losses (SPEC 6).
#pragma once
#include <torch/torch.h>

namespace subq::train {

// Stage 1: Frobenius norm of (student M - teacher attention probabilities) per (batch, head), averaged.
torch::Tensor MatrixOrientationLoss(const torch::Tensor& student_m, const torch::Tensor& teacher_p);
// Stage 2: mean over tokens of the L2 norm (over d_model) of (student block out - teacher block out).
torch::Tensor HiddenStateLoss(const torch::Tensor& student_out, const torch::Tensor& teacher_out);
// Stage 3: cross-entropy of student_logits / T against softmax(teacher_logits / T), mean over tokens.
torch::Tensor SoftCrossEntropy(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double T);

}  // namespace subq::train
