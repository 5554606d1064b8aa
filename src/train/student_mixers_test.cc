// The Gated DeltaNet and Mamba-3 students against the engine's mixers on the same weights: forward
// (chunked prefill and token steps) and the materialised mixing matrix; plus the delta rule's linearity.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "mixers/gated_deltanet.h"
#include "mixers/mamba3.h"
#include "train/student_mixers.h"

namespace subq::train {
namespace {

Tensor ToSubq(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat32).contiguous();
  Tensor out(c.sizes().vec());
  std::memcpy(out.ptr(), c.data_ptr<float>(), sizeof(float) * out.numel());
  return out;
}
torch::Tensor FromSubq(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.ptr()), t.shape, torch::kFloat32).clone();
}
std::map<std::string, Tensor> ByName(const StudentMixer& m) {
  std::map<std::string, Tensor> w;
  for (const auto& p : m.Params()) w[p.name] = ToSubq(p.t);
  return w;
}
// Perturbs every parameter so that no init symmetry (ones, identity convs) hides a layout error.
void Jitter(const StudentMixer& m) {
  torch::NoGradGuard ng;
  for (const auto& p : m.Params()) {
    torch::Tensor t = p.t;
    t.add_(torch::randn_like(t) * 0.3);
  }
}

// Engine forward as prefill (one call) and as token steps; both against torch.
void ExpectForwardMatches(Mixer& eng, const StudentMixer& st, const torch::Tensor& u, double tol) {
  const int64_t L = u.size(1), D = u.size(2);
  auto ref = st.Forward(u).squeeze(0);  // [L, D]
  auto uf = ToSubq(u.squeeze(0));
  Tensor out({L, D});
  auto s1 = eng.NewState();
  eng.Forward(uf.ptr(), static_cast<int>(L), 0, *s1, out.ptr());
  EXPECT_LT((FromSubq(out) - ref).abs().max().item<double>(), tol) << "prefill";
  auto s2 = eng.NewState();
  for (int64_t l = 0; l < L; ++l) eng.Forward(uf.ptr() + l * D, 1, static_cast<int>(l), *s2, out.ptr() + l * D);
  EXPECT_LT((FromSubq(out) - ref).abs().max().item<double>(), tol) << "step";
  auto M = st.Materialize(u).squeeze(0);  // [H, L, L]
  auto Me = FromSubq(eng.Materialize(uf.ptr(), static_cast<int>(L)));
  EXPECT_LT((Me - M).abs().max().item<double>(), tol) << "materialize";
}

TEST(GatedDeltaRule, LinearInValuesAndFirstToken) {
  torch::manual_seed(3);
  const int64_t B = 2, L = 9, H = 3, dk = 4, dv = 5;
  auto q = torch::randn({B, L, H, dk}, torch::kFloat64), k = torch::nn::functional::normalize(
                                                               torch::randn({B, L, H, dk}, torch::kFloat64),
                                                               torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto v = torch::randn({B, L, H, dv}, torch::kFloat64);
  auto g = -torch::rand({B, L, H}, torch::kFloat64), beta = torch::rand({B, L, H}, torch::kFloat64);
  auto o = GatedDeltaRule(q, k, v, g, beta);  // [B, L, H, dv]
  auto eye = torch::eye(L, torch::kFloat64).view({1, L, 1, L}).expand({B, L, H, L});
  auto M = GatedDeltaRule(q, k, eye, g, beta).permute({0, 2, 1, 3});  // [B, H, L, L]
  EXPECT_LT((torch::matmul(M, v.permute({0, 2, 1, 3})).permute({0, 2, 1, 3}) - o).abs().max().item<double>(), 1e-12);
  EXPECT_LT(M.triu(1).abs().max().item<double>(), 1e-15);  // causal
  // t = 0: o = beta (q . k) v
  auto o0 = beta.select(1, 0).unsqueeze(-1) * (q.select(1, 0) * k.select(1, 0)).sum(-1, true) * v.select(1, 0);
  EXPECT_LT((o.select(1, 0) - o0).abs().max().item<double>(), 1e-12);
}

TEST(GatedDeltaNetStudent, MatchesEngineMixer) {
  torch::manual_seed(11);
  StudentRecipe s;
  s.kind = "gated_deltanet", s.n_qk_heads = 2, s.n_v_heads = 4, s.head_dim = 8, s.d_state = 6, s.conv_kernel = 3;
  const int D = 16;
  const double eps = 1e-5;
  auto st = MakeGatedDeltaNetMixer(D, s, eps, nullptr);
  Jitter(*st);
  auto w = ByName(*st);
  GatedDeltaNetConfig c;
  c.n_qk_heads = 2, c.n_v_heads = 4, c.head_k_dim = 8, c.head_v_dim = 6, c.conv_kernel = 3, c.chunk_size = 8;
  c.norm_eps = static_cast<float>(eps);
  GatedDeltaNetWeights gw{w["q_proj.weight"], w["k_proj.weight"],   w["v_proj.weight"],   w["a_proj.weight"],
                          w["b_proj.weight"], w["A_log"],           w["dt_bias"],         w["q_conv1d.weight"],
                          w["k_conv1d.weight"], w["v_conv1d.weight"], w["g_proj.weight"], w["o_norm.weight"],
                          w["o_proj.weight"]};
  ASSERT_TRUE(GatedDeltaNetMixer::Validate(c, D, gw).ok());
  GatedDeltaNetMixer eng(c, D, std::move(gw));
  torch::NoGradGuard ng;
  ExpectForwardMatches(eng, *st, torch::randn({1, 21, D}), 2e-5);
}

TEST(Mamba3Student, MatchesEngineMixer) {
  torch::manual_seed(12);
  StudentRecipe s;
  s.kind = "mamba3", s.n_v_heads = 4, s.head_dim = 8, s.d_state = 8, s.n_groups = 2, s.chunk_size = 8;
  const int D = 16;
  auto st = MakeMamba3Mixer(D, s, nullptr);
  Jitter(*st);
  auto w = ByName(*st);
  Mamba3Config c;
  c.n_heads = 4, c.head_dim = 8, c.state_size = 8, c.n_groups = 2, c.chunk_size = 8;
  Mamba3Weights mw;
  mw.in_proj = w["in_proj.weight"], mw.dt_bias = w["dt_bias"], mw.D = w["D"], mw.B_norm = w["B_norm.weight"];
  mw.C_norm = w["C_norm.weight"], mw.B_bias = w["B_bias"], mw.C_bias = w["C_bias"], mw.out_proj = w["out_proj.weight"];
  ASSERT_TRUE(Mamba3Mixer::Validate(c, D, mw).ok());
  Mamba3Mixer eng(c, D, std::move(mw));
  torch::NoGradGuard ng;
  ExpectForwardMatches(eng, *st, torch::randn({1, 21, D}), 2e-5);
}

}  // namespace
}  // namespace subq::train
