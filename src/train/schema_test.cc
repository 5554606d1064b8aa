// One schema across the stacks, on real weights (stories260K teacher): for every student kind, pure and
// layer hybrid, the exported config.json parses back to the trainer's ModelConfig field by field, the
// exported tensors are the schema's (family keys + mixer table), the engine loads them, and the engine's
// mixing matrices equal the trainer's (one definition: y = M x, D skip on the diagonal). Held-out
// perplexity through the engine's scorer equals the engine's own on the exported checkpoint.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "../../tests/test_util.h"
#include "eval/perplexity.h"
#include "eval/text_data.h"
#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "model/schema.h"
#include "train/export.h"
#include "train/heldout.h"
#include "train/student.h"
#include "train/teacher.h"

namespace subq::train {
namespace {

namespace fs = std::filesystem;

struct Kind {
  std::string name;
  StudentRecipe r;
};

std::vector<Kind> Kinds() {
  std::vector<Kind> out;
  StudentRecipe r;
  r.init = "random";
  r.kind = "discrete_mamba2", r.n_qk_heads = 4, r.n_v_heads = 8, r.head_dim = 8, r.d_state = 8, r.chunk_size = 16;
  out.push_back({"dm2", r});
  r = {};
  r.init = "random";
  r.kind = "mamba2", r.n_v_heads = 8, r.head_dim = 16, r.d_state = 8, r.n_groups = 2, r.chunk_size = 16;
  out.push_back({"mamba2", r});
  r = {};
  r.init = "random";
  r.kind = "mamba3", r.n_v_heads = 8, r.head_dim = 8, r.d_state = 8, r.n_groups = 2, r.chunk_size = 16;
  out.push_back({"mamba3", r});
  r = {};
  r.init = "random";
  r.kind = "gated_deltanet", r.n_qk_heads = 4, r.n_v_heads = 8, r.head_dim = 8, r.d_state = 12, r.conv_kernel = 3;
  out.push_back({"gated_deltanet", r});
  const size_t n = out.size();
  for (size_t i = 0; i < n; ++i) {  // layer hybrids: teacher attention kept in layers 1 and 3
    Kind k = out[i];
    k.name += "+attn";
    k.r.attention_layers = {3, 1};
    out.push_back(k);
  }
  return out;
}

std::unique_ptr<Teacher> LoadTeacher() {
  auto t = Teacher::Load(testing::DataDir() + "/stories260K/stories260K.bin");  // llama2.c: interleaved rows
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? std::move(t.value()) : nullptr;
}

// Perturbs every parameter (D, norms, biases too) so that no init value hides a layout or definition error.
void Jitter(const Student& s) {
  torch::NoGradGuard ng;
  for (const auto& p : s.Params()) {
    torch::Tensor t = p.t;
    t.add_(torch::randn_like(t) * 0.05);
  }
}

std::string TmpDir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / fmt::format("subq_schema_{}_{}", ::getpid(), name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

TEST(Schema, EveryStudentKindExportsTheEngineConfigAndTensors) {
  auto t = LoadTeacher();
  ASSERT_TRUE(t);
  for (const Kind& k : Kinds()) {
    SCOPED_TRACE(k.name);
    auto st = Student::FromTeacher(*t, k.r, 5);  // checks each mixer's tensors against the table
    ASSERT_TRUE(st.ok()) << st.status().message();
    const Student& s = **st;
    const std::string dir = TmpDir(k.name);
    ASSERT_TRUE(ExportStudent(s, dir).ok());
    auto ck = ReadCheckpoint(dir);
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    const auto diff = ConfigDiff(s.cfg, ck->config);
    EXPECT_TRUE(diff.empty()) << fmt::format("{}", fmt::join(diff, "; "));
    // The exported names are exactly the schema's: family keys + the mixer table of every layer.
    auto keys = WriteKeysForFamily(s.cfg);
    ASSERT_TRUE(keys.ok());
    std::set<std::string> want{keys->embed, keys->final_norm};
    if (!s.cfg.tie_embeddings) want.insert(keys->lm_head);
    for (int l = 0; l < s.cfg.n_layers; ++l) {
      const std::string p = keys->LayerPrefix(l);
      const bool attn = s.cfg.layers[l].mixer == MixerKind::kAttention;
      auto specs = MixerTensors(s.cfg, l);
      ASSERT_TRUE(specs.ok());
      for (const auto& spec : *specs) {
        const std::string name = p + (attn ? keys->attention : keys->recurrent) + spec.name;
        want.insert(name);
        const TensorInfo* ti = ck->tensors.Find(name);
        ASSERT_NE(ti, nullptr) << name;
        EXPECT_EQ(ti->shape, spec.shape) << name;
      }
      want.insert(p + keys->in_norm), want.insert(p + keys->mlp_norm);
      for (const auto& m : MlpTensorNames(*keys)) want.insert(p + m);
    }
    std::set<std::string> got;
    for (const auto& ti : ck->tensors.tensors()) got.insert(ti.name);
    EXPECT_EQ(got, want);
    EXPECT_TRUE(Model::FromCheckpoint(*ck).ok());
    fs::remove_all(dir);
  }
}

TEST(Schema, TrainerAndEngineMaterializeTheSameMatrix) {
  auto t = LoadTeacher();
  ASSERT_TRUE(t);
  const std::vector<int> tokens = {1, 403, 407, 261, 378, 275, 354, 269, 266, 289, 306, 407, 261, 378, 275, 29, 46};
  torch::manual_seed(9);
  for (const Kind& k : Kinds()) {
    SCOPED_TRACE(k.name);
    auto st = Student::FromTeacher(*t, k.r, 5);
    ASSERT_TRUE(st.ok()) << st.status().message();
    const Student& s = **st;
    Jitter(s);
    const std::string dir = TmpDir(k.name + "_m");
    ASSERT_TRUE(ExportStudent(s, dir).ok());
    auto ck = ReadCheckpoint(dir);
    ASSERT_TRUE(ck.ok());
    auto model = Model::FromCheckpoint(*ck);
    ASSERT_TRUE(model.ok()) << model.status().message();
    torch::NoGradGuard ng;
    auto x = torch::embedding(s.embed, torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.end())).view({1, -1}));
    for (int l = 0; l < s.cfg.n_layers; ++l) {
      auto me = (*model)->MixingMatrix(tokens, l);
      ASSERT_TRUE(me.ok()) << me.status().message();
      auto mt = s.MaterializeOnInput(l, x)[0];  // [H, L, L]
      auto engine = torch::from_blob(me->ptr(), me->shape, torch::kFloat32).clone();
      ASSERT_EQ(engine.sizes(), mt.sizes()) << "layer " << l;
      const double scale = mt.abs().max().item<double>();
      EXPECT_LT((engine - mt).abs().max().item<double>(), 1e-4 * std::max(1.0, scale)) << "layer " << l;
      if (!s.is_attention(l) && k.r.kind != "gated_deltanet") {  // the D skip sits on the diagonal
        auto diag = mt.diagonal(0, -2, -1);  // [H, L]
        EXPECT_GT(diag.abs().min().item<double>(), 0.0) << "layer " << l;
      }
      x = s.Block(l, x);
    }
    fs::remove_all(dir);
  }
}

TEST(Schema, HeldOutPerplexityIsTheEngines) {
  auto t = LoadTeacher();
  ASSERT_TRUE(t);
  auto ck_t = ReadCheckpoint(testing::DataDir() + "/stories260K/stories260K.bin");
  ASSERT_TRUE(ck_t.ok());
  auto tok = TokenizerForCheckpoint(*ck_t);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  std::ifstream f(testing::DataDir() + "/text/tinystories-sample.txt", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  text = text.substr(text.size() - 20000);  // the last stories
  const std::string dir = TmpDir("ppl");
  auto held = WriteHeldOut(text, "<|endoftext|>", **tok, 1500, 256, dir + "/held_out.txt");
  ASSERT_TRUE(held.ok()) << held.status().message();
  EXPECT_EQ(held->window, 256);
  EXPECT_GE(static_cast<int64_t>(held->tokens.size()), 1501);
  EXPECT_LT(static_cast<int64_t>(held->tokens.size()), 1501 + 600);  // stops after the document that reaches it
  auto again = TokenizeTextFile(dir + "/held_out.txt", **tok);  // what `subq eval --text` reads
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, held->tokens);

  Kind k = Kinds()[0];
  auto st = Student::FromTeacher(*t, k.r, 5);
  ASSERT_TRUE(st.ok());
  Jitter(**st);
  ASSERT_TRUE(ExportStudent(**st, dir).ok());
  auto ck_s = ReadCheckpoint(dir);
  ASSERT_TRUE(ck_s.ok());
  for (bool student : {false, true}) {
    SCOPED_TRACE(student ? "student" : "teacher");
    auto engine_model = Model::FromCheckpoint(student ? *ck_s : *ck_t);
    ASSERT_TRUE(engine_model.ok());
    auto engine = Perplexity(**engine_model, held->tokens, held->window, held->stride);
    ASSERT_TRUE(engine.ok()) << engine.status().message();
    auto src = student ? TorchLogits([&](const torch::Tensor& x) { return (*st)->Logits(x); }, 512, INT_MAX, false,
                                     torch::kCPU)
                       : TorchLogits([&](const torch::Tensor& x) { return t->Forward(x); }, 512, 512, true,
                                     torch::kCPU);
    auto trainer = Perplexity(*src, held->tokens, held->window, held->stride);
    ASSERT_TRUE(trainer.ok()) << trainer.status().message();
    EXPECT_EQ(trainer->tokens, engine->tokens);
    EXPECT_LT(std::fabs(trainer->perplexity / engine->perplexity - 1.0), 1e-4)
        << trainer->perplexity << " vs " << engine->perplexity;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace subq::train
