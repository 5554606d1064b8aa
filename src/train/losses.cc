// MOHAWK stage losses (losses.h).
#include "train/losses.h"

#include "train/torch_math.h"

namespace subq::train {

torch::Tensor MatrixOrientationLoss(const torch::Tensor& student_m, const torch::Tensor& teacher_p) {
  return (AtLeastF32(student_m) - AtLeastF32(teacher_p)).pow(2).sum({-2, -1}).sqrt().mean();  // [B, H, L, L] -> scalar
}

torch::Tensor HiddenStateLoss(const torch::Tensor& student_out, const torch::Tensor& teacher_out) {
  // linalg_vector_norm, not sqrt(sum of squares): its gradient at a zero residual is 0, not NaN (an Oryx
  // layer's attention-mode rows start equal to the teacher's).
  return at::linalg_vector_norm(AtLeastF32(student_out) - AtLeastF32(teacher_out), 2, {-1}).mean();  // [B, L, D] -> scalar
}

torch::Tensor SoftCrossEntropy(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double T) {
  auto target = torch::softmax(AtLeastF32(teacher_logits) / T, -1);                        // [B, L, V]
  return -(target * torch::log_softmax(AtLeastF32(student_logits) / T, -1)).sum(-1).mean();
}

}  // namespace subq::train
