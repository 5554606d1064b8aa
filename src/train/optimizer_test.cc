// FusedAdamW against libtorch's AdamW: same updates over several steps with two groups (decay / no
// decay), a changing learning rate and a parameter without a gradient; and checkpoints interchange.
#include "train/optimizer.h"

#include <gtest/gtest.h>

#include <sstream>

namespace subq::train {
namespace {

struct AdamWCase {
  std::vector<torch::Tensor> w;  // [5, 7] (decayed), [7] (not decayed), [3] (never gets a gradient)
  std::vector<torch::optim::OptimizerParamGroup> Groups() const {
    auto o = torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
    auto nd = o;
    nd.weight_decay(0.0);
    std::vector<torch::optim::OptimizerParamGroup> g;
    g.emplace_back(std::vector<torch::Tensor>{w[0]}, std::make_unique<torch::optim::AdamWOptions>(o));
    g.emplace_back(std::vector<torch::Tensor>{w[1], w[2]}, std::make_unique<torch::optim::AdamWOptions>(nd));
    return g;
  }
};

AdamWCase Make() {
  torch::manual_seed(7);
  AdamWCase s;
  s.w = {torch::randn({5, 7}).requires_grad_(), torch::randn({7}).requires_grad_(), torch::randn({3}).requires_grad_()};
  return s;
}

template <class Opt>
void Steps(AdamWCase& s, Opt& opt, int n, int first) {
  for (int i = first; i < first + n; ++i) {
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(1e-2 / (1 + i));
    opt.zero_grad();
    auto x = torch::linspace(-1, 1, 7) * (1 + i);
    auto loss = (torch::matmul(s.w[0], x + s.w[1]).pow(2)).sum();  // w[2] unused: no gradient
    loss.backward();
    opt.step();
  }
}

TEST(FusedAdamW, MatchesLibtorchAdamW) {
  AdamWCase a = Make(), b = Make();
  torch::optim::AdamW ref(a.Groups());
  FusedAdamW fused(b.Groups());
  Steps(a, ref, 6, 0);
  Steps(b, fused, 6, 0);
  for (size_t i = 0; i < a.w.size(); ++i)
    EXPECT_LT((a.w[i] - b.w[i]).abs().max().item<double>(), 1e-6) << "param " << i;
  EXPECT_TRUE(b.w[2].grad().defined() == false || b.w[2].grad().abs().sum().item<double>() == 0);
}

TEST(FusedAdamW, StateSerialisesLikeAdamW) {
  AdamWCase a = Make(), b = Make();
  torch::optim::AdamW ref(a.Groups());
  Steps(a, ref, 3, 0);
  std::ostringstream bytes;
  {
    torch::serialize::OutputArchive ar;
    ref.save(ar);
    ar.save_to(bytes);
  }
  for (size_t i = 0; i < a.w.size(); ++i) b.w[i].detach().copy_(a.w[i].detach());
  FusedAdamW fused(b.Groups());
  {
    torch::serialize::InputArchive ar;
    const std::string s = bytes.str();
    ar.load_from(s.data(), s.size());
    fused.load(ar);
  }
  Steps(a, ref, 3, 3);  // resumed: both continue from step 3 with the same moments
  Steps(b, fused, 3, 3);
  for (size_t i = 0; i < a.w.size(); ++i)
    EXPECT_LT((a.w[i] - b.w[i]).abs().max().item<double>(), 1e-6) << "param " << i;
}

}  // namespace
}  // namespace subq::train
