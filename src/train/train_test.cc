// libtorch side of MOHAWK: the SSD forms against a naive recurrence, the DM2 mixer against a
// token-by-token reference, the stage losses, the schedule, recipes, and the torch teacher vs the engine.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "io/checkpoint.h"
#include "model/model.h"
#include "../../tests/test_util.h"
#include "train/data.h"
#include "train/distill.h"
#include "train/losses.h"
#include "train/student.h"
#include "train/student_mixers.h"
#include "train/teacher.h"
#include "train/recipe.h"

namespace subq::train {
namespace {

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

struct SsdInputs {
  torch::Tensor x, loga, Bm, Cm;
};
SsdInputs RandomSsd(int64_t B, int64_t L, int64_t H, int64_t P, int64_t N) {
  torch::manual_seed(7);
  return {torch::randn({B, L, H, P}, torch::kFloat64), -torch::rand({B, L, H}, torch::kFloat64) * 0.7,
          torch::randn({B, L, H, N}, torch::kFloat64), torch::randn({B, L, H, N}, torch::kFloat64)};
}

TEST(Ssd, ChunkedAndMatrixMatchRecurrence) {
  auto in = RandomSsd(2, 37, 3, 4, 5);
  auto ref = SsdRecurrent(in.x, in.loga, in.Bm, in.Cm);  // [B, L, H, P]
  for (int64_t q : {1, 4, 8, 16, 37, 64}) {
    auto y = SsdChunked(in.x, in.loga, in.Bm, in.Cm, q);
    EXPECT_LT(MaxDiff(y, ref), 1e-10) << "chunk " << q;
  }
  auto M = SsdMatrix(in.loga, in.Bm, in.Cm);                      // [B, H, L, L]
  auto y = torch::matmul(M, in.x.permute({0, 2, 1, 3}));          // [B, H, L, P]
  EXPECT_LT(MaxDiff(y.permute({0, 2, 1, 3}), ref), 1e-10);
  // causal: nothing above the diagonal
  EXPECT_EQ(torch::triu(M, 1).abs().max().item<double>(), 0.0);
}

TEST(Ssd, GradientsOfChunkedMatchMatrixForm) {
  auto in = RandomSsd(1, 20, 2, 3, 4);
  for (auto* t : {&in.x, &in.loga, &in.Bm, &in.Cm}) t->set_requires_grad(true);
  auto w = torch::randn({1, 20, 2, 3}, torch::kFloat64);
  auto g1 = torch::autograd::grad({(SsdChunked(in.x, in.loga, in.Bm, in.Cm, 6) * w).sum()}, {in.loga, in.Bm});
  auto ym = torch::matmul(SsdMatrix(in.loga, in.Bm, in.Cm), in.x.permute({0, 2, 1, 3})).permute({0, 2, 1, 3});
  auto g2 = torch::autograd::grad({(ym * w).sum()}, {in.loga, in.Bm});
  EXPECT_LT(MaxDiff(g1[0], g2[0]), 1e-9);
  EXPECT_LT(MaxDiff(g1[1], g2[1]), 1e-9);
}

// Token-by-token Discrete Mamba-2 written from SPEC 3, reading the mixer's parameters by name.
torch::Tensor NaiveDm2(const StudentMixer& m, const torch::Tensor& u, const StudentRecipe& s, torch::Tensor* M) {
  std::map<std::string, torch::Tensor> p;
  for (auto& nt : m.Params()) p[nt.name] = nt.t.detach();
  const int64_t L = u.size(1), Hv = s.n_v_heads, Hq = s.n_qk_heads, P = s.head_dim, N = s.d_state,
                K = s.conv_kernel, di = Hv * P, cd = di + 2 * Hq * N;
  auto zxa = torch::linear(u[0], p["in_proj.weight"]);  // [L, rows]
  auto xbc_in = zxa.narrow(1, 0, cd);
  auto xbc = torch::zeros_like(xbc_in);
  for (int64_t t = 0; t < L; ++t) {
    auto acc = p["conv1d.bias"].clone();
    for (int64_t k = 0; k < K; ++k) {
      const int64_t src = t - (K - 1) + k;
      if (src >= 0) acc += p["conv1d.weight"].select(1, 0).select(1, k) * xbc_in[src];
    }
    xbc[t] = acc;
  }
  auto z = zxa.narrow(1, cd, di), alog = zxa.narrow(1, cd + di, Hv);
  auto h = torch::zeros({Hv, P, N}, u.options());
  auto y = torch::zeros({L, di}, u.options());
  *M = torch::zeros({Hv, L, L}, u.options());
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t hv = 0; hv < Hv; ++hv) {
      const int64_t hq = hv / (Hv / Hq);
      auto x = xbc[t].narrow(0, hv * P, P), b = xbc[t].narrow(0, di + hq * N, N),
           c = xbc[t].narrow(0, di + Hq * N + hq * N, N);
      auto a = torch::exp(-torch::softplus(alog[t][hv]));
      h[hv] = a * h[hv] + torch::outer(x, b);
      y[t].narrow(0, hv * P, P).copy_(torch::mv(h[hv], c) + p["D"][hv] * x);
      // M[t, s] = (C_t . B_s) prod_{r=s+1..t} a_r, + D on the diagonal
      double decay = 1.0;
      for (int64_t s2 = t; s2 >= 0; --s2) {
        auto bs = xbc[s2].narrow(0, di + hq * N, N);
        (*M)[hv][t][s2] = torch::dot(c, bs).item<double>() * decay + (s2 == t ? p["D"][hv].item<double>() : 0.0);
        decay *= std::exp(-torch::softplus(alog[s2][hv]).item<double>());
      }
    }
  }
  y = y * torch::silu(z + p["z_bias"]);
  return torch::linear(y, p["out_proj.weight"]).unsqueeze(0);
}

TEST(DiscreteMamba2, ForwardAndMaterializeMatchNaiveRecurrence) {
  torch::manual_seed(3);
  StudentRecipe s;
  s.n_qk_heads = 2, s.n_v_heads = 4, s.head_dim = 3, s.d_state = 5, s.conv_kernel = 4, s.chunk_size = 8;
  auto m = MakeDm2Mixer(12, s);
  {  // leave the identity/gate-open init: perturb every parameter so the test sees all of them
    torch::NoGradGuard ng;
    for (auto& nt : m->Params()) nt.t.add_(torch::randn_like(nt.t) * 0.3);
  }
  auto u = torch::randn({1, 19, 12});
  torch::Tensor Mref;
  auto ref = NaiveDm2(*m, u, s, &Mref);
  const double scale = ref.abs().max().item<double>();  // f32 forms: relative tolerance
  EXPECT_LT(MaxDiff(m->Forward(u), ref), 1e-5 * scale) << "scale " << scale;
  auto M = m->Materialize(u)[0];  // [H, L, L]
  EXPECT_LT(MaxDiff(M, Mref), 1e-5 * Mref.abs().max().item<double>());
}

TEST(Losses, MatchHandComputedValues) {
  auto a = torch::zeros({1, 2, 2, 2}), b = torch::zeros({1, 2, 2, 2});
  a[0][0][0][0] = 3, a[0][0][1][0] = 4;  // head 0: Frobenius 5; head 1: 0
  EXPECT_NEAR(MatrixOrientationLoss(a, b).item<double>(), 2.5, 1e-6);
  auto h = torch::zeros({1, 2, 3}), g = torch::zeros({1, 2, 3});
  h[0][0][0] = 3, h[0][0][2] = 4;  // token 0: L2 5, token 1: 0
  EXPECT_NEAR(HiddenStateLoss(h, g).item<double>(), 2.5, 1e-6);
  // Soft CE of identical logits is the entropy; with T the distributions are tempered.
  auto lg = torch::tensor({1.0, 2.0, 3.0}).view({1, 1, 3});
  auto p = torch::softmax(lg, -1);
  EXPECT_NEAR(SoftCrossEntropy(lg, lg, 1.0).item<double>(), -(p * p.log()).sum().item<double>(), 1e-6);
  auto p2 = torch::softmax(lg / 2.0, -1);
  EXPECT_NEAR(SoftCrossEntropy(lg, lg, 2.0).item<double>(), -(p2 * p2.log()).sum().item<double>(), 1e-6);
}

TEST(Schedule, WarmupStableDecay) {
  // 100 steps, 10% warmup, 10% decay
  EXPECT_NEAR(WsdLr(0, 100, 1e-3, 0.1, 0.1, 1e-8), 1e-4, 1e-12);
  EXPECT_NEAR(WsdLr(9, 100, 1e-3, 0.1, 0.1, 1e-8), 1e-3, 1e-12);
  EXPECT_NEAR(WsdLr(50, 100, 1e-3, 0.1, 0.1, 1e-8), 1e-3, 1e-12);
  EXPECT_NEAR(WsdLr(89, 100, 1e-3, 0.1, 0.1, 1e-8), 1e-3, 1e-12);
  EXPECT_LT(WsdLr(90, 100, 1e-3, 0.1, 0.1, 1e-8), 1e-3);
  EXPECT_NEAR(WsdLr(99, 100, 1e-3, 0.1, 0.1, 1e-8), 1e-8, 1e-12);
}

TEST(Data, SamplerIsDeterministicAndResumable) {
  std::vector<int> stream(1000);
  for (int i = 0; i < 1000; ++i) stream[i] = i;
  VectorTokenSource src(&stream);
  SequenceSampler a(&src, 10, 42), b(&src, 10, 42);
  std::vector<int> x(10), y(10);
  for (int i = 0; i < 150; ++i) ASSERT_TRUE(a.Next(x.data()).ok());  // into the second epoch
  b.SetPosition(150);
  ASSERT_TRUE(a.Next(x.data()).ok());
  ASSERT_TRUE(b.Next(y.data()).ok());
  EXPECT_EQ(x, y);
  EXPECT_EQ(x[0] % 10, 0);  // aligned windows
  EXPECT_EQ(SplitDocuments("a<|endoftext|> b \n<|endoftext|><|endoftext|>c", "<|endoftext|>"),
            (std::vector<std::string>{"a", "b", "c"}));
}

std::string TinyRecipe() {
  const std::string d = subq::testing::DataDir();
  return "teacher: " + d + "/stories260K/hf\n" + "data:\n  files: [" + d + "/text/tinystories-sample.txt]\n" +
         "student: {n_qk_heads: 8, n_v_heads: 8, head_dim: 8, d_state: 8}\n" +
         "stages:\n  end_to_end: {tokens: 2048, lr: 0.001, batch_tokens: 1024}\n";
}

TEST(Recipe, ParsesAndRejectsBadInput) {
  auto ok = ParseRecipe(TinyRecipe(), "tiny.yaml", ".");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->stages[2].tokens, 2048);
  EXPECT_EQ(ok->student.kind, "discrete_mamba2");
  auto unknown = ParseRecipe(TinyRecipe() + "bogus_key: 1\n", "tiny.yaml", ".");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown key 'bogus_key'"), std::string::npos);
  auto nested = ParseRecipe(TinyRecipe(), "tiny.yaml", ".", {"student.heads=3"});
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(nested.status().message().find("student.heads"), std::string::npos);
  auto bad = ParseRecipe(TinyRecipe(), "tiny.yaml", ".", {"stages.end_to_end.lr=abc"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("stages.end_to_end.lr"), std::string::npos);
  auto missing = ParseRecipe(TinyRecipe(), "tiny.yaml", ".", {"data.files=[/nonexistent.txt]"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent.txt"), std::string::npos);
  auto batch = ParseRecipe(TinyRecipe(), "tiny.yaml", ".", {"stages.end_to_end.batch_tokens=1000"});
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("multiple of seq_len"), std::string::npos);
  auto no_checkpoints = ParseRecipe(TinyRecipe(), "tiny.yaml", ".", {"checkpoint_every=0"});  // off (benches)
  ASSERT_TRUE(no_checkpoints.ok()) << no_checkpoints.status().message();
  EXPECT_EQ(no_checkpoints->checkpoint_every, 0);
  auto negative = ParseRecipe(TinyRecipe(), "tiny.yaml", ".", {"checkpoint_every=-1"});
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("checkpoint_every"), std::string::npos);
}

// The torch teacher reproduces the engine's logits on the llama2.c file (interleaved RoPE, un-permuted
// here) and on the HF folder (rotate-half).
TEST(Teacher, MatchesEngineLogits) {
  const std::string d = subq::testing::DataDir();
  std::vector<int> ids = {1, 403, 407, 261, 378, 429, 300, 283, 313, 350, 283, 422};
  for (const std::string path : {d + "/stories260K/stories260K.bin", d + "/stories260K/hf"}) {
    auto t = Teacher::Load(path);
    ASSERT_TRUE(t.ok()) << t.status().message();
    auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({1, -1});
    auto tl = (*t)->Forward(x)[0];  // [L, V]
    auto ck = ReadCheckpoint(path);
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    auto model = Model::FromCheckpoint(*ck);
    ASSERT_TRUE(model.ok()) << model.status().message();
    auto seq = (*model)->NewSequence();
    ASSERT_TRUE(seq.ok()) << seq.status().message();
    Workspace ws(**model, static_cast<int>(ids.size()));
    std::vector<float> logits(ids.size() * tl.size(1));
    ASSERT_TRUE((*model)->Forward(ids.data(), static_cast<int>(ids.size()), *seq, ws, logits.data(), true).ok());
    auto el = torch::from_blob(logits.data(), {static_cast<int64_t>(ids.size()), tl.size(1)});
    EXPECT_LT(MaxDiff(tl, el), 1e-4) << path;
  }
}

}  // namespace
}  // namespace subq::train
