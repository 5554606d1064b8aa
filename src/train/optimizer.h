// AdamW whose step is one multi-tensor kernel per parameter group (ATen's _fused_adamw_, the kernel behind
// PyTorch's `AdamW(fused=True)`), instead of libtorch's per-parameter loop of ~10 element-wise ops each.
// State, options, param groups and serialisation are torch::optim::AdamW's, so checkpoints written by
// either load in the other. amsgrad is not supported (the recipe has no switch for it).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "train/recipe.h"

namespace subq::train {

class FusedAdamW : public torch::optim::AdamW {
 public:
  explicit FusedAdamW(std::vector<torch::optim::OptimizerParamGroup> groups,
                      torch::optim::AdamWOptions defaults = {});
  torch::Tensor step(LossClosure closure = nullptr) override;
};

// AdamW options of the recipe at learning rate `lr`, and the two parameter groups every trainer uses:
// matrices (dim >= 2) decayed by o.weight_decay, vectors (norms, biases, per-head scalars) not.
torch::optim::AdamWOptions AdamWDefaults(double lr, const OptimRecipe& o);
std::vector<torch::optim::OptimizerParamGroup> AdamWGroups(const std::vector<torch::Tensor>& params, double lr,
                                                           const OptimRecipe& o);

}  // namespace subq::train
