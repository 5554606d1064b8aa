// How the trainer's math runs (recipe section `compute`): bf16 autocast for teacher and student compute
// with f32 master weights and AdamW state, TF32 for the f32 matmuls left on CUDA, and activation
// checkpointing of student blocks (recompute in backward instead of keeping activations).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace subq::train {

// Sets TF32 for cuBLAS / cuDNN matmuls and convolutions on CUDA (no effect on CPU).
void ConfigureMatmulPrecision(const torch::Device& dev, bool tf32);

// While alive, ops on `dev`'s device type run under autocast to bf16 (matmuls and linears in bf16, the
// ops autocast keeps in f32 stay there); parameters stay f32. Disabled scopes change nothing.
// The previous state is restored (and the cast cache cleared) at the end.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& dev, bool bf16);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

// y = fn(x) where the activations inside fn are not kept: the forward runs without grad and the
// backward runs fn again (under the autocast state of the forward) to get the gradients of x and of
// `params` (the tensors fn reads that need gradients). Without grad mode this is just fn(x).
torch::Tensor CheckpointedCall(const std::function<torch::Tensor(const torch::Tensor&)>& fn, const torch::Tensor& x,
                               const std::vector<torch::Tensor>& params);

// Scales the gradients of `params` so their global L2 norm is at most max_norm; returns the norm before
// clipping as a 0-dim tensor on the gradients' device (no host sync, unlike clip_grad_norm_).
torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace subq::train
