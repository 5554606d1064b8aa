// How the trainer's math runs, on the real stories260K teacher and TinyStories text: bf16 autocast stays
// close to f32 with f32 weights and grads, activation checkpointing gives the same gradients,
// head-chunked stage-1 matrices equal the full ones, clipping matches libtorch's, and data-parallel
// gradient averaging over Gloo (2 ranks in threads) with buckets small enough to split the grads.
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <thread>

#include "../../tests/test_util.h"
#include "io/tokenizer.h"
#include "train/compute.h"
#include "train/distributed.h"
#include "train/losses.h"
#include "train/student.h"
#include "train/teacher.h"

namespace subq::train {
namespace {

struct Models {
  std::unique_ptr<Teacher> teacher;
  std::unique_ptr<Student> student;
  torch::Tensor ids;  // [2, 64] of TinyStories text
};

Models Load() {
  Models s;
  const std::string d = subq::testing::DataDir();
  auto t = Teacher::Load(d + "/stories260K/hf");
  EXPECT_TRUE(t.ok()) << t.status().message();
  s.teacher = std::move(t.value());
  StudentRecipe r;
  r.n_qk_heads = r.n_v_heads = 8;
  r.head_dim = r.d_state = 8;
  r.chunk_size = 16;
  auto st = Student::FromTeacher(*s.teacher, r, 3);
  EXPECT_TRUE(st.ok()) << st.status().message();
  s.student = std::move(st.value());
  auto tok = LoadTokenizer(d + "/stories260K/tok512.model");
  EXPECT_TRUE(tok.ok());
  auto ids = (*tok)->Encode(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her dog. "
      "One day, she saw a big red ball in the park. She ran to get it, but a boy took it first. Lily was sad.",
      true);
  ids.resize(128, 1);
  s.ids = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({2, 64});
  return s;
}

// Stage-3 loss and the gradients of every student parameter.
std::pair<double, std::vector<torch::Tensor>> Stage3Grads(const Models& s, bool bf16) {
  auto params = s.student->Params();
  for (auto& p : params) {
    p.t.set_requires_grad(true);
    p.t.mutable_grad() = torch::Tensor();
  }
  double loss = 0;
  {
    AutocastScope ac(torch::kCPU, bf16);
    auto l = SoftCrossEntropy(s.student->Logits(s.ids), s.teacher->Forward(s.ids), 1.0);
    EXPECT_EQ(l.scalar_type(), torch::kFloat32);
    l.backward();
    loss = l.item<double>();
  }
  std::vector<torch::Tensor> g;
  for (auto& p : params) {
    EXPECT_EQ(p.t.scalar_type(), torch::kFloat32) << p.name;  // master weights stay f32
    EXPECT_EQ(p.t.grad().scalar_type(), torch::kFloat32) << p.name;
    g.push_back(p.t.grad().clone());
    p.t.set_requires_grad(false);
  }
  return {loss, g};
}

TEST(Compute, Bf16AutocastStaysCloseToF32) {
  Models s = Load();
  auto [l32, g32] = Stage3Grads(s, false);
  auto [l16, g16] = Stage3Grads(s, true);
  EXPECT_FALSE(at::autocast::is_autocast_enabled(torch::kCPU));  // the scope restored the state
  EXPECT_NEAR(l16, l32, 0.02 * l32);
  auto flat = [](const std::vector<torch::Tensor>& v) {
    std::vector<torch::Tensor> f;
    for (auto& t : v) f.push_back(t.reshape({-1}));
    return torch::cat(f);
  };
  const auto a = flat(g32), b = flat(g16);
  EXPECT_GT(torch::cosine_similarity(a, b, 0).item<double>(), 0.98);
}

TEST(Compute, CheckpointedBlocksGiveTheSameGradients) {
  Models s = Load();
  auto [l0, g0] = Stage3Grads(s, false);
  s.student->checkpoint_blocks = true;
  auto [l1, g1] = Stage3Grads(s, false);
  EXPECT_NEAR(l0, l1, 1e-6);
  for (size_t i = 0; i < g0.size(); ++i) EXPECT_LT((g0[i] - g1[i]).abs().max().item<double>(), 1e-5) << i;
  auto [l2, g2] = Stage3Grads(s, true);  // recompute under the forward's autocast state
  EXPECT_NEAR(l2, l0, 0.02 * l0);
}

TEST(Compute, HeadChunksOfStageOneEqualTheFullMatrices) {
  Models s = Load();
  torch::NoGradGuard ng;
  Teacher::Trace tr;
  s.teacher->Forward(s.ids, &tr, /*want_probs=*/true);
  for (int l : {0, 3}) {
    const auto& tl = s.teacher->layers[l];
    auto u = RmsNorm(tr.inputs[l], tl.in_norm, s.teacher->config().norm_eps);
    auto full = s.student->MaterializeOnInput(l, tr.inputs[l]);  // [B, H, L, L]
    for (int64_t h0 : {0, 3, 6}) {
      const int64_t nh = std::min<int64_t>(3, 8 - h0);
      EXPECT_LT((s.student->MaterializeOnInput(l, tr.inputs[l], h0, nh) - full.narrow(1, h0, nh)).abs().max().item<double>(), 1e-6);
      EXPECT_LT((AttentionProbs(tl.attn, u, h0, nh) - tr.probs[l].narrow(1, h0, nh)).abs().max().item<double>(), 1e-6);
    }
  }
}

TEST(Compute, ClipGradNormMatchesLibtorch) {
  torch::manual_seed(1);
  std::vector<torch::Tensor> a{torch::randn({5, 7}), torch::randn({11})}, b{a[0].clone(), a[1].clone()};
  for (size_t i = 0; i < 2; ++i) {
    a[i].mutable_grad() = torch::randn_like(a[i]) * 3;
    b[i].mutable_grad() = a[i].grad().clone();
  }
  const double want = torch::nn::utils::clip_grad_norm_(b, 1.0);
  EXPECT_NEAR(ClipGradNorm(a, 1.0).item<double>(), want, 1e-5);
  for (size_t i = 0; i < 2; ++i) EXPECT_LT((a[i].grad() - b[i].grad()).abs().max().item<double>(), 1e-6);
}

TEST(DataParallel, GlooAveragesGradientsInBuckets) {
  const int port = 20000 + static_cast<int>(::getpid() % 20000);
  std::vector<std::vector<torch::Tensor>> grads(2);
  std::vector<std::string> errors(2);
  auto rank = [&](int r) {
    DistEnv env;
    env.rank = r;
    env.world = 2;
    env.master_port = port;
    auto dp = DataParallel::Join(env, torch::kCPU, 60);
    if (!dp.ok()) {
      errors[r] = dp.status().message();
      return;
    }
    // Shapes and a dtype mix that need several buckets of 64 bytes; one parameter without a grad.
    std::vector<torch::Tensor> params{torch::zeros({3, 5}), torch::zeros({7}), torch::zeros({2}, torch::kFloat64),
                                      torch::zeros({4})};
    for (size_t i = 0; i < 3; ++i) params[i].mutable_grad() = torch::full_like(params[i], r + 1.0 + i);
    (*dp)->AverageGradients(params, 64);
    for (auto& p : params) grads[r].push_back(p.grad());
    auto loss = torch::tensor(2.0 * r);
    (*dp)->AverageInPlace(loss);
    if (loss.item<double>() != 1.0) errors[r] = "AverageInPlace";
  };
  std::thread t0(rank, 0), t1(rank, 1);
  t0.join();
  t1.join();
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  for (int r = 0; r < 2; ++r) {
    for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(grads[r][i], torch::full_like(grads[r][i], 1.5 + i)));
    EXPECT_FALSE(grads[r][3].defined());
    EXPECT_EQ(grads[r][2].scalar_type(), torch::kFloat64);
  }
}

TEST(DataParallel, EnvironmentIsValidated) {
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "2", 1);
  EXPECT_FALSE(DistEnvFromEnvironment().ok());
  ::setenv("RANK", "x", 1);
  EXPECT_FALSE(DistEnvFromEnvironment().ok());
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("RANK");
  auto e = DistEnvFromEnvironment();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->world, 1);
}

}  // namespace
}  // namespace subq::train
