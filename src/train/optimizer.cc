// FusedAdamW (optimizer.h).
#include "train/optimizer.h"

#include <map>
#include <stdexcept>

namespace subq::train {

FusedAdamW::FusedAdamW(std::vector<torch::optim::OptimizerParamGroup> groups, torch::optim::AdamWOptions defaults)
    : torch::optim::AdamW(std::move(groups), std::move(defaults)) {}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (o.amsgrad()) throw std::invalid_argument("FusedAdamW: amsgrad is not supported");
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    // The kernel reads each parameter's step count (after this step's increment) from a device scalar;
    // parameters of a group normally share one count, so one scalar per distinct count is made.
    std::map<int64_t, torch::Tensor> step_scalars;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& slot = state_[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        st->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        slot = std::move(st);
      }
      auto& st = static_cast<torch::optim::AdamWParamState&>(*slot);
      st.step(st.step() + 1);
      auto it = step_scalars.find(st.step());
      if (it == step_scalars.end())
        it = step_scalars.emplace(st.step(), torch::full({}, static_cast<double>(st.step()),
                                                         p.options().dtype(torch::kFloat32))).first;
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(st.exp_avg());
      exp_avg_sqs.push_back(st.exp_avg_sq());
      steps.push_back(it->second);
    }
    if (params.empty()) continue;
    const auto [beta1, beta2] = o.betas();
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, o.lr(), beta1, beta2,
                      o.weight_decay(), o.eps(), /*amsgrad=*/false, /*maximize=*/false);
  }
  return loss;
}

torch::optim::AdamWOptions AdamWDefaults(double lr, const OptimRecipe& o) {
  return torch::optim::AdamWOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
}

std::vector<torch::optim::OptimizerParamGroup> AdamWGroups(const std::vector<torch::Tensor>& params, double lr,
                                                           const OptimRecipe& o) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& t : params) (t.dim() >= 2 ? decay : no_decay).push_back(t);
  const auto opts = AdamWDefaults(lr, o);
  auto nd = opts;
  nd.weight_decay(0.0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(nd));
  return groups;
}

}  // namespace subq::train
