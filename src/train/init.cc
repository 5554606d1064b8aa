// Initialisation helpers (init.h).
#include "train/init.h"

#include <cmath>

namespace subq::train {

torch::Tensor FromSubq(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.ptr()), t.shape, torch::kFloat32).clone();
}

torch::Tensor InterleavedToRotateHalf(const torch::Tensor& w, int n_heads, int head_dim) {
  const int64_t in = w.size(1);
  return w.view({n_heads, head_dim / 2, 2, in}).transpose(1, 2).reshape({n_heads * head_dim, in}).contiguous();
}

torch::Tensor LinearInit(int64_t out, int64_t in) {
  const double b = 1.0 / std::sqrt(static_cast<double>(in));
  return torch::empty({out, in}).uniform_(-b, b);
}

torch::Tensor IdentityConv(int64_t channels, int64_t k) {
  auto w = torch::zeros({channels, 1, k});
  w.select(2, k - 1).fill_(1.0);
  return w;
}

torch::Tensor RepeatKvRows(const torch::Tensor& w, int n_heads, int n_kv, int hd) {
  return w.view({n_kv, hd, -1}).repeat_interleave(n_heads / n_kv, 0).reshape({n_heads * hd, -1});
}

torch::Tensor DtBiasInit(int64_t heads) {
  auto dt = torch::exp(torch::rand({heads}) * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3)).clamp_min(1e-4);
  return dt + torch::log(-torch::expm1(-dt));
}

torch::Tensor ALogInit(int64_t heads) { return torch::log(torch::rand({heads}) * 15.0 + 1.0); }

}  // namespace subq::train
