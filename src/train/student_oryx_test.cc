// Oryx student (student_oryx.cc) distilled from the real stories260K teacher: exported, the engine's
// logits equal the trainer's in attention mode, in recurrent mode and switched along the sequence, for
// both recurrences; the training mask is a pure function of the batch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "../../tests/test_util.h"
#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "mixers/oryx.h"
#include "model/model.h"
#include "train/export.h"
#include "train/losses.h"
#include "train/student.h"
#include "train/student_mixers.h"
#include "train/teacher.h"

namespace subq::train {
namespace {

std::vector<int> Ids(int n) {
  auto tok = LoadTokenizer(subq::testing::DataDir() + "/stories260K/tok512.model");
  EXPECT_TRUE(tok.ok());
  auto ids = (*tok)->Encode(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her "
      "friend Ben. One day they found a big red ball under a tree and they played with it all day long.", true);
  ids.resize(std::min<size_t>(ids.size(), n));
  return ids;
}

std::unique_ptr<Student> MakeStudent(const Teacher& t, const std::string& recurrence) {
  StudentRecipe s;
  s.kind = "oryx", s.oryx_recurrence = recurrence, s.chunk_size = 8;
  auto st = Student::FromTeacher(t, s, 3);
  EXPECT_TRUE(st.ok()) << st.status().message();
  // Move the extras off their init so the comparison sees every one of them.
  torch::NoGradGuard ng;
  torch::manual_seed(5);
  for (auto& p : (*st)->Params())
    if (p.name.find("oryx_") != std::string::npos) p.t.add_(torch::randn_like(p.t) * 0.2);
  return std::move(*st);
}

class OryxStudentParity : public ::testing::TestWithParam<const char*> {};

TEST_P(OryxStudentParity, EngineLogitsMatchTrainerInEachModeAndSwitched) {
  auto t = Teacher::Load(subq::testing::DataDir() + "/stories260K/hf");
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto st = MakeStudent(**t, GetParam());
  const auto dir = std::filesystem::temp_directory_path() / ("subq_oryx_export_" + std::string(GetParam()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(ExportStudent(*st, dir.string()).ok());
  auto ck = ReadCheckpoint(dir.string());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto model = Model::FromCheckpoint(*ck);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const auto* m0 = dynamic_cast<const OryxMixer*>((*model)->blocks()[0].mixer.get());
  ASSERT_NE(m0, nullptr);
  EXPECT_GE(m0->SharedFraction(), 0.9);
  const std::vector<int> ids = Ids(40);
  const int L = static_cast<int>(ids.size()), V = (*model)->config().vocab_size, t_switch = 17;
  auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({1, -1});
  for (const char* spec : {"attention", "recurrent", "attention:0-17,recurrent:17-", "recurrent:0-9,attention:9-30"}) {
    SCOPED_TRACE(spec);
    const ModeSchedule sched = ModeSchedule::Parse(spec).value();
    auto mask = torch::zeros({L}, torch::kBool);
    for (int i = 0; i < L; ++i) mask[i] = sched.At(i, MixerMode::kRecurrent) == MixerMode::kAttention;
    st->oryx_modes->fixed = mask;
    torch::Tensor tl;
    {
      torch::NoGradGuard ng;
      tl = st->Logits(x)[0];  // [L, V]
    }
    auto seq = (*model)->NewSequence(L).value();
    seq.modes = sched;
    Workspace ws(**model, 64);
    std::vector<float> logits(static_cast<size_t>(L) * V);
    ASSERT_TRUE((*model)->Forward(ids.data(), t_switch, seq, ws, logits.data(), true).ok());  // prefill
    for (int i = t_switch; i < L; ++i)  // then decode
      ASSERT_TRUE((*model)->Forward(&ids[i], 1, seq, ws, logits.data() + static_cast<size_t>(i) * V).ok());
    auto el = torch::from_blob(logits.data(), {L, V});
    EXPECT_LT((tl - el).abs().max().item<double>(), 2e-4);
  }
  // Attention mode is the teacher (q/k/v/o copied and shared).
  st->oryx_modes->fixed = torch::ones({L}, torch::kBool);
  torch::NoGradGuard ng;
  EXPECT_LT((st->Logits(x) - (*t)->Forward(x)).abs().max().item<double>(), 1e-4);
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Recurrence, OryxStudentParity, ::testing::Values("ssd", "gdn"));

TEST(OryxStudent, TrainingMaskIsAFunctionOfTheBatchWithTheAskedFraction) {
  auto t = Teacher::Load(subq::testing::DataDir() + "/stories260K/hf");
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto st = MakeStudent(**t, "ssd");
  const std::vector<int> ids = Ids(40);
  auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({1, -1});
  double att = 0.0;
  for (auto& p : st->Params()) p.t.set_requires_grad(true);
  auto a = st->Logits(x);  // grad mode: layer 0 draws the mask
  const torch::Tensor m1 = st->oryx_modes->current.clone();
  auto b = st->Logits(x);
  EXPECT_TRUE(torch::equal(m1, st->oryx_modes->current));
  EXPECT_TRUE(torch::equal(a, b));
  att = m1.to(torch::kFloat64).mean().item<double>();
  EXPECT_LE(att, 2 * st->spec.oryx_attention_fraction + 1.0 / ids.size());
  a.sum().backward();  // gradients reach shared and extra weights
  for (auto& p : st->Params())
    if (p.name.find("self_attn.") != std::string::npos && p.name.find("layers.0.") != std::string::npos &&
        p.name.find("oryx_b_proj") == std::string::npos)
      EXPECT_TRUE(p.t.grad().defined() && p.t.grad().abs().sum().item<double>() > 0) << p.name;
}

}  // namespace
}  // namespace subq::train

namespace subq::train {
namespace {
TEST(OryxStudent, StageTwoGradientsAreFiniteOnLongMaskedBatches) {
  auto t = Teacher::Load(subq::testing::DataDir() + "/stories260K/hf");
  ASSERT_TRUE(t.ok());
  for (const char* rec : {"ssd", "gdn"}) {
    StudentRecipe s;
    s.kind = "oryx", s.oryx_recurrence = rec, s.chunk_size = 32, s.oryx_attention_fraction = 0.1;
    auto st = std::move(Student::FromTeacher(**t, s, 3).value());
    for (auto& p : st->Params()) p.t.set_requires_grad(true);
    torch::manual_seed(1);
    auto x = torch::randint(3, 500, {4, 256}, torch::kLong);
    Teacher::Trace tr;
    {
      torch::NoGradGuard ng;
      (*t)->Forward(x, &tr);
    }
    for (int l = 0; l < 5; ++l) {
      auto out = st->Block(l, tr.inputs[l]);
      HiddenStateLoss(out, tr.inputs[l + 1]).backward();  // attention-mode rows start with a zero residual
    }
    for (auto& p : st->Params())
      if (p.t.grad().defined()) EXPECT_TRUE(torch::isfinite(p.t.grad()).all().item<bool>()) << rec << " " << p.name;

  }
}
}  // namespace
}  // namespace subq::train
