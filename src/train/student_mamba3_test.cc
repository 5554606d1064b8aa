// The complete Mamba-3 student (SISO, output norm, rope_fraction 1.0, MIMO R = 2/4) against the engine's
// mixer on the same weights (prefill, token steps, mixing matrix), its chunked scan against its token
// recurrence, Materialize against the pre-gate output, exported students' logits against the engine's on
// the Stories260K teacher, and the recipe keys.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <unistd.h>

#include <map>

#include "../../tests/test_util.h"
#include "io/checkpoint.h"
#include "mixers/mamba3.h"
#include "model/model.h"
#include "train/export.h"
#include "train/student_mamba3.h"
#include "train/student_mixers.h"
#include "train/teacher.h"

namespace subq::train {
namespace {

namespace fs = std::filesystem;

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
Tensor ToSubq(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat32).contiguous();
  Tensor out(c.sizes().vec());
  std::memcpy(out.ptr(), c.data_ptr<float>(), sizeof(float) * out.numel());
  return out;
}
torch::Tensor ToTorch(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.ptr()), t.shape, torch::kFloat32).clone();
}
// Perturbs every parameter so that no init symmetry (ones, 1/R) hides a layout error.
void Jitter(const StudentMixer& m, double scale = 0.3) {
  torch::NoGradGuard ng;
  for (const auto& p : m.Params()) {
    torch::Tensor t = p.t;
    t.add_(torch::randn_like(t) * scale);
  }
}

struct Case {
  const char* name;
  int rank;
  bool norm;
  double rope;
};
const Case kCases[] = {{"siso", 1, false, 0.5}, {"siso_norm", 1, true, 0.5}, {"siso_rope1", 1, false, 1.0},
                       {"mimo2", 2, false, 0.5}, {"mimo4_norm", 4, true, 0.5}, {"mimo2_rope1", 2, true, 1.0}};

StudentRecipe Recipe(const Case& c, int heads, int groups, int hd, int N, int chunk) {
  StudentRecipe s;
  s.kind = "mamba3", s.n_v_heads = heads, s.n_groups = groups, s.head_dim = hd, s.d_state = N;
  s.chunk_size = chunk, s.mimo_rank = c.rank, s.outproj_norm = c.norm, s.rope_fraction = c.rope;
  return s;
}

Mamba3Config EngineConfig(const StudentRecipe& s) {
  Mamba3Config c;
  c.n_heads = s.n_v_heads, c.head_dim = s.head_dim, c.state_size = s.d_state, c.n_groups = s.n_groups;
  c.chunk_size = s.chunk_size, c.mimo_rank = s.mimo_rank, c.output_norm = s.outproj_norm;
  c.rope_fraction = static_cast<float>(s.rope_fraction);
  return c;
}

Mamba3Weights EngineWeights(const StudentMixer& m) {
  std::map<std::string, Tensor> w;
  for (const auto& p : m.Params()) w[p.name] = ToSubq(p.t);
  Mamba3Weights mw;
  mw.in_proj = w["in_proj.weight"], mw.dt_bias = w["dt_bias"], mw.D = w["D"], mw.B_norm = w["B_norm.weight"];
  mw.C_norm = w["C_norm.weight"], mw.B_bias = w["B_bias"], mw.C_bias = w["C_bias"], mw.out_proj = w["out_proj.weight"];
  if (w.count("mimo_x")) mw.mimo_x = w["mimo_x"], mw.mimo_z = w["mimo_z"], mw.mimo_o = w["mimo_o"];
  if (w.count("norm.weight")) mw.norm = w["norm.weight"];
  return mw;
}

TEST(Mamba3Student, EveryVariantMatchesEngineMixer) {
  const int D = 16;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    torch::manual_seed(21);
    const StudentRecipe s = Recipe(c, 4, 2, 8, 8, 8);
    auto st = MakeMamba3Mixer(D, s, nullptr);
    Jitter(*st);
    const Mamba3Config ec = EngineConfig(s);
    Mamba3Weights mw = EngineWeights(*st);
    ASSERT_TRUE(Mamba3Mixer::Validate(ec, D, mw).ok()) << Mamba3Mixer::Validate(ec, D, mw).message();
    Mamba3Mixer eng(ec, D, std::move(mw));
    torch::NoGradGuard ng;
    const int64_t L = 21;
    auto u = torch::randn({1, L, D});
    auto ref = st->Forward(u).squeeze(0);  // [L, D]
    auto uf = ToSubq(u.squeeze(0));
    Tensor out({L, D});
    auto s1 = eng.NewState();
    eng.Forward(uf.ptr(), static_cast<int>(L), 0, *s1, out.ptr());
    const double tol = 2e-5 * (1 + ref.abs().max().item<double>());  // f32 rounding of both sides
    EXPECT_LT(MaxDiff(ToTorch(out), ref), tol) << "prefill";
    auto s2 = eng.NewState();
    for (int64_t l = 0; l < L; ++l) eng.Forward(uf.ptr() + l * D, 1, static_cast<int>(l), *s2, out.ptr() + l * D);
    EXPECT_LT(MaxDiff(ToTorch(out), ref), tol) << "step";
    auto M = st->Materialize(u).squeeze(0);  // [H, L, L]
    auto Me = ToTorch(eng.Materialize(uf.ptr(), static_cast<int>(L)));
    EXPECT_LT(MaxDiff(Me, M), 2e-5 * (1 + M.abs().max().item<double>())) << "materialize";
  }
}

// Chunked scan (chunk 5 over 23 tokens: a partial last chunk) == the token recurrence, in f64.
TEST(Mamba3Student, ChunkedMatchesTokenRecurrence) {
  const int D = 12;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    torch::manual_seed(5);
    Mamba3Student st(D, Recipe(c, 4, 1, 6, 8, 5));
    Jitter(st);
    torch::NoGradGuard ng;
    for (const auto& p : st.Params()) {
      torch::Tensor t = p.t;
      t.set_data(t.to(torch::kFloat64));
    }
    auto u = torch::randn({2, 23, D}, torch::kFloat64);
    auto a = st.Forward(u), b = st.ForwardRecurrent(u);
    EXPECT_LT(MaxDiff(a, b), 1e-10);
    EXPECT_GT(b.abs().max().item<double>(), 1e-3);  // not trivially zero
  }
}

// Materialize(u) applied to x == the rank-summed pre-gate output (D skip included): exact for SISO and
// for MIMO when mimo_x / mimo_o are constant along the head dim (the definition in student_mamba3.h).
TEST(Mamba3Student, MaterializeAppliedToXIsPreGateOutput) {
  const int D = 16;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    torch::manual_seed(9);
    Mamba3Student st(D, Recipe(c, 4, 2, 8, 8, 6));
    Jitter(st);
    torch::NoGradGuard ng;
    if (c.rank > 1) {  // per-(head, rank) constants along P (random across heads and ranks)
      st.mimo_x.copy_(torch::randn({4, c.rank, 1}).expand({4, c.rank, 8}));
      st.mimo_o.copy_(torch::randn({4, c.rank, 1}).expand({4, c.rank, 8}));
    }
    auto u = torch::randn({2, 17, D});
    auto M = st.Materialize(u);                                                                  // [B, H, L, L]
    auto x = st.Project(u).x.permute({0, 2, 1, 3});                                              // [B, H, L, P]
    auto y = torch::matmul(M, x).permute({0, 2, 1, 3});                                          // [B, L, H, P]
    auto ref = st.PreGate(u);
    EXPECT_LT(MaxDiff(y, ref), 2e-5 * (1 + ref.abs().max().item<double>()));
    EXPECT_LT(M.triu(1).abs().max().item<double>(), 1e-12);  // causal
  }
}

// Trainer logits == engine logits (prefill and token steps) on exported students built from the
// Stories260K teacher with attention init and jittered mixers.
TEST(Mamba3Student, ExportedStudentsMatchEngineLogits) {
  const std::string d = subq::testing::DataDir();
  auto t = Teacher::Load(d + "/stories260K/hf");
  ASSERT_TRUE(t.ok()) << t.status().message();
  const std::vector<int> ids = {1, 403, 407, 261, 378, 429, 300, 283, 313, 350, 283, 422, 300, 261, 407, 283, 378};
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    StudentRecipe s = Recipe(c, 8, 8, 8, 8, 4);
    s.init = "attention";
    auto st = Student::FromTeacher(**t, s, 3);
    ASSERT_TRUE(st.ok()) << st.status().message();
    for (const auto& L : (*st)->layers) Jitter(*L.mixer, 0.05);
    const fs::path out = fs::temp_directory_path() / fmt::format("subq_m3_export_{}_{}", c.name, ::getpid());
    fs::create_directories(out);
    ASSERT_TRUE(ExportStudent(**st, out.string()).ok());
    torch::Tensor tl;
    {
      torch::NoGradGuard ng;
      tl = (*st)->Logits(torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({1, -1}))[0];  // [L, V]
    }
    auto ck = ReadCheckpoint(out.string());
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    auto model = Model::FromCheckpoint(*ck);
    ASSERT_TRUE(model.ok()) << model.status().message();
    EXPECT_EQ((*model)->config().mamba3.mimo_rank, c.rank);
    EXPECT_EQ((*model)->config().mamba3.output_norm, c.norm);
    const int V = static_cast<int>(tl.size(1)), n = static_cast<int>(ids.size());
    for (bool step : {false, true}) {
      auto seq = (*model)->NewSequence();
      ASSERT_TRUE(seq.ok()) << seq.status().message();
      Workspace ws(**model, n);
      std::vector<float> logits(static_cast<size_t>(n) * V);
      if (!step) {
        ASSERT_TRUE((*model)->Forward(ids.data(), n, *seq, ws, logits.data(), true).ok());
      } else {
        for (int i = 0; i < n; ++i)
          ASSERT_TRUE(
              (*model)->Forward(ids.data() + i, 1, *seq, ws, logits.data() + static_cast<size_t>(i) * V, true).ok());
      }
      EXPECT_LT(MaxDiff(tl, torch::from_blob(logits.data(), {n, V})), 1e-4) << (step ? "step" : "prefill");
    }
    fs::remove_all(out);
  }
}

TEST(Mamba3Student, RecipeKeysAreValidated) {
  const std::string d = subq::testing::DataDir();
  const std::string base = "teacher: " + d + "/stories260K/hf\ndata:\n  files: [" + d +
                           "/text/tinystories-sample.txt]\nstages:\n  end_to_end: {tokens: 2048, lr: 0.001, "
                           "batch_tokens: 1024}\n";
  auto parse = [&](const std::string& student) {
    return ParseRecipe(base + "student: " + student + "\n", "m3.yaml", ".");
  };
  const std::string ok3 = "{kind: mamba3, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 8";
  auto ok = parse(ok3 + ", mimo_rank: 4, outproj_norm: true, rope_fraction: 1.0}");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->student.mimo_rank, 4);
  EXPECT_TRUE(ok->student.outproj_norm);
  EXPECT_EQ(ok->student.rope_fraction, 1.0);
  auto def = parse(ok3 + "}");
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(def->student.mimo_rank, 1);
  EXPECT_EQ(def->student.rope_fraction, 0.5);
  const std::pair<std::string, std::string> bad[] = {
      {ok3 + ", mimo_rank: 0}", "mimo_rank"},
      {ok3 + ", rope_fraction: 0.7}", "rope_fraction"},
      {ok3 + ", outproj_norm: maybe}", "outproj_norm"},
      {"{kind: mamba3, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 6}", "multiple of 4"},
      {"{kind: mamba3, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 5, rope_fraction: 1.0}", "even"},
      {"{kind: mamba2, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 8, mimo_rank: 2}", "mamba3 options"}};
  for (const auto& [student, want] : bad) {
    auto r = parse(student);
    ASSERT_FALSE(r.ok()) << student;
    EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status().message();
  }
  auto even = parse("{kind: mamba3, n_groups: 8, n_v_heads: 8, head_dim: 8, d_state: 6, rope_fraction: 1.0}");
  EXPECT_TRUE(even.ok()) << even.status().message();
}

}  // namespace
}  // namespace subq::train
