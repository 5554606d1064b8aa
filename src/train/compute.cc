#include "train/compute.h"

#include <ATen/autocast_mode.h>

namespace subq::train {

void ConfigureMatmulPrecision(const torch::Device& dev, bool tf32) {
  if (!dev.is_cuda()) return;
  at::globalContext().setAllowTF32CuBLAS(tf32);
  at::globalContext().setAllowTF32CuDNN(tf32);
}

AutocastScope::AutocastScope(const torch::Device& dev, bool bf16) {
  if (!bf16) return;
  active_ = true;
  type_ = dev.type();
  prev_enabled_ = at::autocast::is_autocast_enabled(type_);
  prev_dtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::set_autocast_dtype(type_, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type_, prev_enabled_);
  at::autocast::set_autocast_dtype(type_, prev_dtype_);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using BlockFn = std::function<torch::Tensor(const torch::Tensor&)>;

// Keeps the block function alive in the autograd graph until the backward has run.
struct FnHolder : torch::CustomClassHolder {
  explicit FnHolder(BlockFn f) : fn(std::move(f)) {}
  BlockFn fn;
};

// The recompute-in-backward function behind CheckpointedCall.
struct Checkpointed : public torch::autograd::Function<Checkpointed> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, at::TensorList params, const BlockFn& fn) {
    ctx->save_for_backward({x});
    ctx->saved_data["x_grad"] = x.requires_grad();
    ctx->saved_data["n_params"] = static_cast<int64_t>(params.size());
    for (size_t i = 0; i < params.size(); ++i) ctx->saved_data["p" + std::to_string(i)] = params[i];
    ctx->saved_data["fn"] = c10::IValue::make_capsule(c10::make_intrusive<FnHolder>(fn));
    ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(x.device().type());
    torch::NoGradGuard ng;
    return fn(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(ctx->saved_data["x_grad"].toBool());
    const int64_t n = ctx->saved_data["n_params"].toInt();
    std::vector<torch::Tensor> params;
    for (int64_t i = 0; i < n; ++i) params.push_back(ctx->saved_data["p" + std::to_string(i)].toTensor());
    auto holder = c10::static_intrusive_pointer_cast<FnHolder>(ctx->saved_data["fn"].toCapsule());
    torch::Tensor y;
    {
      torch::AutoGradMode g(true);
      AutocastScope ac(x.device(), ctx->saved_data["autocast"].toBool());
      y = holder->fn(x);
    }
    std::vector<torch::Tensor> wrt;
    if (x.requires_grad()) wrt.push_back(x);
    for (auto& p : params) wrt.push_back(p);
    auto grads = torch::autograd::grad({y}, wrt, {grad_out[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    variable_list out;
    size_t g = 0;
    out.push_back(x.requires_grad() ? grads[g++] : torch::Tensor());
    for (int64_t i = 0; i < n; ++i) out.push_back(grads[g++]);
    out.push_back(torch::Tensor());  // fn
    return out;
  }
};

}  // namespace

torch::Tensor CheckpointedCall(const std::function<torch::Tensor(const torch::Tensor&)>& fn, const torch::Tensor& x,
                               const std::vector<torch::Tensor>& params) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  std::vector<torch::Tensor> trainable;
  for (const auto& p : params)
    if (p.requires_grad()) trainable.push_back(p);
  if (trainable.empty() && !x.requires_grad()) return fn(x);
  return Checkpointed::apply(x, at::TensorList(trainable), fn);
}

torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().detach().to(torch::kFloat32).norm().unsqueeze(0));
  if (norms.empty()) return torch::zeros({});
  torch::Tensor total = torch::cat(norms).norm();
  const torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().detach().mul_(coef.to(p.grad().scalar_type()));
  return total;
}

}  // namespace subq::train
