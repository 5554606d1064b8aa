// Oryx multi-mixer on the real stories260K teacher (q/k/v/o are its attention; the small recurrent
// extras are seeded random): parameter sharing, the three forms in each mode, switching along the
// sequence against a from-scratch materialized reference, and the layer-by-layer model reference.
#include <atomic>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/hf_config.h"
#include "io/random_tensors.h"
#include "io/tokenizer.h"
#include "mixers/oryx.h"
#include "model/model.h"
#include "ops/ops.h"
#include "test_util.h"

namespace subq::testing {
extern std::atomic<bool> g_counting;    // src/model/batch_test.cc
extern std::atomic<long> g_allocations;
}  // namespace subq::testing

namespace subq {
namespace {

using testing::DataDir;

Status AddTensor(TensorStore& store, const std::string& name, const Tensor& t) {
  std::vector<uint8_t> bytes(t.data.size() * 4);
  std::memcpy(bytes.data(), t.data.data(), bytes.size());
  TensorInfo info;
  info.name = name, info.dtype = DType::kF32, info.shape = t.shape, info.nbytes = bytes.size(), info.file = "memory";
  info.data = store.Own(std::move(bytes));
  return store.Add(std::move(info));
}

// The stories260K teacher with every layer made Oryx; extras: decay with dt in ~[0.01, 0.1] and
// A in [1, 4] (memory spanning tens of tokens), random a/b projections, D ~ 1, norm ~ 1.
Result<std::unique_ptr<Model>> OryxStories(const std::string& recurrence, const std::string& default_mode = "recurrent") {
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(DataDir() + "/stories260K/hf"));
  ck.config.oryx.recurrence = recurrence;
  ck.config.oryx.default_mode = default_mode;
  ck.config.oryx.chunk_size = 16;  // several gdn chunks in the tests' lengths
  for (auto& l : ck.config.layers) l.mixer = MixerKind::kOryx;
  std::mt19937 rng(7);
  const int64_t H = ck.config.attn.n_heads, d = ck.config.dim, hd = ck.config.attn.head_dim;
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  for (int l = 0; l < ck.config.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    SUBQ_RETURN_IF_ERROR(AddRandomTensor(ck.tensors, p + "oryx_a_proj.weight", {H, d}, 0.3f, rng));
    SUBQ_RETURN_IF_ERROR(AddRandomTensor(ck.tensors, p + "oryx_b_proj.weight", {H, d}, 0.3f, rng));
    SUBQ_RETURN_IF_ERROR(AddRandomTensor(ck.tensors, p + "oryx_D", {H}, 0.1f, rng, 1.0f));
    SUBQ_RETURN_IF_ERROR(AddRandomTensor(ck.tensors, p + "oryx_norm.weight", {hd}, 0.1f, rng, 1.0f));
    // dt_bias = inverse softplus of dt in [0.01, 0.1]; A_log = log A, A in [1, 4].
    Tensor dt_bias({H}), a_log({H});
    for (int64_t h = 0; h < H; ++h) {
      const float dt = 0.01f + 0.09f * ud(rng);
      dt_bias.data[h] = dt + std::log(-std::expm1(-dt));
      a_log.data[h] = std::log(1.0f + 3.0f * ud(rng));
    }
    SUBQ_RETURN_IF_ERROR(AddTensor(ck.tensors, p + "oryx_dt_bias", dt_bias));
    SUBQ_RETURN_IF_ERROR(AddTensor(ck.tensors, p + "oryx_A_log", a_log));
  }
  return Model::FromCheckpoint(ck);
}

std::vector<int> StoryTokens(int n) {
  auto tok = LoadTokenizer(DataDir() + "/stories260K/tok512.model");
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  std::ifstream f(DataDir() + "/text/tinystories-sample.txt");
  std::stringstream ss;
  ss << f.rdbuf();
  std::vector<int> ids = (*tok)->Encode(ss.str().substr(0, 4000), true);
  EXPECT_GE(static_cast<int>(ids.size()), n);
  ids.resize(n);
  return ids;
}

double MaxRel(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / den;
}

// Runs the mixer over u [L, dim] from a fresh state in pieces of `piece` tokens (1: the step) under
// `modes`; returns out [L, dim] and leaves the state in *st_out when given.
std::vector<float> RunMixer(const OryxMixer& m, const float* u, int L, int dim, int piece, const ModeSchedule& modes,
                            std::unique_ptr<LayerState>* st_out = nullptr) {
  auto st = m.NewState(L);
  std::vector<float> out(static_cast<size_t>(L) * dim);
  std::vector<float> scratch(m.ScratchFloats(piece, 1));
  for (int t0 = 0; t0 < L; t0 += piece) {
    const int n = std::min(piece, L - t0);
    Arena arena(scratch.data(), scratch.size());
    ExecContext ctx{Threads{1}, &arena, nullptr};
    const SeqSlice s{0, n, t0, st.get(), &modes};
    m.Forward(u + static_cast<size_t>(t0) * dim, n, std::span<const SeqSlice>(&s, 1), ctx,
              out.data() + static_cast<size_t>(t0) * dim);
  }
  if (st_out) *st_out = std::move(st);
  return out;
}

struct Fixture {
  std::unique_ptr<Model> model;
  const OryxMixer* mixer = nullptr;
  Tensor u;  // [L, dim] normalised input of layer 2 on real text
  int L = 0, dim = 0;
};

Fixture Make(const std::string& recurrence, int L) {
  Fixture f;
  auto m = OryxStories(recurrence);
  EXPECT_TRUE(m.ok()) << m.status().message();
  f.model = std::move(*m);
  f.L = L, f.dim = f.model->config().dim;
  const int layer = 2;
  f.mixer = dynamic_cast<const OryxMixer*>(f.model->blocks()[layer].mixer.get());
  EXPECT_NE(f.mixer, nullptr);
  Tensor x = f.model->LayerInput(StoryTokens(L), layer).value();
  f.u = Tensor({L, f.dim});
  ops::RmsNorm(x.ptr(), f.model->blocks()[layer].in_norm.ptr(), f.u.ptr(), L, f.dim, f.model->config().norm_eps);
  return f;
}

std::vector<float> Reference(const Fixture& f, MixerMode mode) {
  std::vector<float> out(static_cast<size_t>(f.L) * f.dim);
  f.mixer->OutputFromMixing(f.mixer->MaterializeMode(f.u.ptr(), f.L, mode), f.u.ptr(), f.L, mode, out.data());
  return out;
}

class OryxForms : public ::testing::TestWithParam<const char*> {};

TEST_P(OryxForms, SharesAtLeast90PercentOfParameters) {
  Fixture f = Make(GetParam(), 8);
  ASSERT_NE(f.mixer, nullptr);
  EXPECT_GE(f.mixer->SharedFraction(), 0.90);
  std::printf("oryx %s on stories260K: shared %lld, extras %lld, shared fraction %.4f\n", GetParam(),
              static_cast<long long>(f.mixer->SharedParams()), static_cast<long long>(f.mixer->ExtraParams()),
              f.mixer->SharedFraction());
}

TEST_P(OryxForms, StepChunkedAndMaterializedAgreeInEachMode) {
  Fixture f = Make(GetParam(), 70);
  ASSERT_NE(f.mixer, nullptr);
  for (MixerMode mode : {MixerMode::kAttention, MixerMode::kRecurrent}) {
    SCOPED_TRACE(MixerModeName(mode));
    const ModeSchedule sched = ModeSchedule::Uniform(mode);
    const std::vector<float> ref = Reference(f, mode);
    EXPECT_LT(MaxRel(RunMixer(*f.mixer, f.u.ptr(), f.L, f.dim, f.L, sched), ref), 2e-5);  // one chunked call
    EXPECT_LT(MaxRel(RunMixer(*f.mixer, f.u.ptr(), f.L, f.dim, 23, sched), ref), 2e-5);   // chunked pieces
    EXPECT_LT(MaxRel(RunMixer(*f.mixer, f.u.ptr(), f.L, f.dim, 1, sched), ref), 2e-5);    // step
  }
  // The two modes differ (the test can fail): attention and recurrence are different mixers.
  EXPECT_GT(MaxRel(Reference(f, MixerMode::kAttention), Reference(f, MixerMode::kRecurrent)), 1e-2);
}

TEST_P(OryxForms, SwitchingAtTokenTMatchesEachModeFromScratch) {
  Fixture f = Make(GetParam(), 64);
  ASSERT_NE(f.mixer, nullptr);
  const std::vector<float> att = Reference(f, MixerMode::kAttention), rec = Reference(f, MixerMode::kRecurrent);
  for (const char* spec : {"attention:0-29,recurrent:29-", "recurrent:0-29,attention:29-",
                           "attention:0-5,recurrent:5-40,attention:40-41"}) {
    SCOPED_TRACE(spec);
    const ModeSchedule sched = ModeSchedule::Parse(spec).value();
    std::vector<float> want(att.size());
    for (int t = 0; t < f.L; ++t) {
      const auto& src = sched.At(t, MixerMode::kRecurrent) == MixerMode::kAttention ? att : rec;
      std::copy_n(src.begin() + static_cast<size_t>(t) * f.dim, f.dim, want.begin() + static_cast<size_t>(t) * f.dim);
    }
    for (int piece : {f.L, 17, 1}) {
      SCOPED_TRACE(piece);
      std::unique_ptr<LayerState> st;
      EXPECT_LT(MaxRel(RunMixer(*f.mixer, f.u.ptr(), f.L, f.dim, piece, sched, &st), want), 2e-5);
      // The state after the switched run is the one an unswitched run reaches: KV cache and S both current.
      std::unique_ptr<LayerState> plain;
      RunMixer(*f.mixer, f.u.ptr(), f.L, f.dim, f.L, ModeSchedule::Uniform(MixerMode::kRecurrent), &plain);
      const auto& a = static_cast<const OryxState&>(*st);
      const auto& b = static_cast<const OryxState&>(*plain);
      ASSERT_EQ(a.kv.len(), f.L);
      std::vector<float> sa(a.rec.S.data.begin(), a.rec.S.data.end()), sb(b.rec.S.data.begin(), b.rec.S.data.end());
      EXPECT_LT(MaxRel(sa, sb), 1e-5);
      std::vector<float> ka(a.kv.k_at(0), a.kv.k_at(0) + f.L * a.kv.row()), kb(b.kv.k_at(0), b.kv.k_at(0) + f.L * b.kv.row());
      EXPECT_LT(MaxRel(ka, kb), 1e-6);  // (projections over different row counts round differently)
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Recurrence, OryxForms, ::testing::Values("ssd", "gdn"));

// Whole model: logits of a switched run equal a layer-by-layer reference built from the materialized
// matrices of each layer over all tokens from scratch (attention rows from softmax, recurrent rows from M).
class OryxModelSwitch : public ::testing::TestWithParam<const char*> {};

TEST_P(OryxModelSwitch, LogitsMatchLayerwiseMaterializedReference) {
  auto mr = OryxStories(GetParam());
  ASSERT_TRUE(mr.ok()) << mr.status().message();
  const Model& model = **mr;
  const ModelConfig& c = model.config();
  const int L = 48, D = c.dim, F = c.hidden_dim, V = c.vocab_size, t_switch = 31;
  const std::vector<int> ids = StoryTokens(L);
  const ModeSchedule sched = ModeSchedule::Parse("prompt:attention,gen:recurrent", t_switch).value();
  // Reference.
  std::vector<float> x(static_cast<size_t>(L) * D), u(x.size()), ma(x.size()), mrec(x.size());
  const Threads th = Threads::Default();
  auto ck = ReadCheckpoint(DataDir() + "/stories260K/hf").value();
  for (int t = 0; t < L; ++t) {
    const Tensor e = ck.tensors.Load("model.embed_tokens.weight", {V, D}).value();
    std::copy_n(e.ptr() + static_cast<size_t>(ids[t]) * D, D, x.begin() + static_cast<size_t>(t) * D);
  }
  for (const Block& b : model.blocks()) {
    const auto& m = dynamic_cast<const OryxMixer&>(*b.mixer);
    ops::RmsNorm(x.data(), b.in_norm.ptr(), u.data(), L, D, c.norm_eps);
    m.OutputFromMixing(m.MaterializeMode(u.data(), L, MixerMode::kAttention), u.data(), L, MixerMode::kAttention,
                       ma.data());
    m.OutputFromMixing(m.MaterializeMode(u.data(), L, MixerMode::kRecurrent), u.data(), L, MixerMode::kRecurrent,
                       mrec.data());
    for (int t = 0; t < L; ++t)
      for (int i = 0; i < D; ++i)
        x[static_cast<size_t>(t) * D + i] += (t < t_switch ? ma : mrec)[static_cast<size_t>(t) * D + i];
    std::vector<float> h1(static_cast<size_t>(L) * F), h2(h1.size());
    ops::RmsNorm(x.data(), b.mlp_norm.ptr(), u.data(), L, D, c.norm_eps);
    ops::Linear(th, u.data(), L, b.mlp.gate, h1.data());
    ops::Linear(th, u.data(), L, b.mlp.up, h2.data());
    ops::SiluMul(h1.data(), h2.data(), static_cast<int64_t>(L) * F);
    ops::Linear(th, h1.data(), L, b.mlp.down, x.data(), true);
  }
  const Tensor fn = ck.tensors.Load("model.norm.weight", {D}).value();
  ops::RmsNorm(x.data(), fn.ptr(), u.data(), L, D, c.norm_eps);
  std::vector<float> want(static_cast<size_t>(L) * V);
  ops::Linear(th, u.data(), L, ops::Weight::F32(ck.tensors.Load("model.embed_tokens.weight", {V, D}).value().ptr(), V, D),
              want.data());
  // Engine: prompt prefill (attention) then token-by-token decode (recurrent), and one prefill over all.
  for (int prefill : {t_switch, L}) {
    SCOPED_TRACE(prefill);
    SequenceState seq = model.NewSequence(L).value();
    seq.modes = sched;
    Workspace ws(model, 64, Threads{1});
    std::vector<float> got(static_cast<size_t>(L) * V);
    ASSERT_TRUE(model.Forward(ids.data(), prefill, seq, ws, got.data(), true).ok());
    for (int t = prefill; t < L; ++t)
      ASSERT_TRUE(model.Forward(&ids[t], 1, seq, ws, got.data() + static_cast<size_t>(t) * V).ok());
    EXPECT_LT(MaxRel(got, want), 1e-4);
  }
  // Snapshot at the switch, continue in the other mode: the recurrent part equals the above run.
  SequenceState all_att = model.NewSequence(L).value();
  all_att.modes = ModeSchedule::Uniform(MixerMode::kAttention);
  Workspace ws(model, 64, Threads{1});
  std::vector<float> lg(V);
  ASSERT_TRUE(model.Forward(ids.data(), t_switch, all_att, ws, lg.data()).ok());
  SequenceState cont = all_att.Snapshot();
  cont.modes = ModeSchedule::Uniform(MixerMode::kRecurrent);
  std::vector<float> got(static_cast<size_t>(L - t_switch) * V);
  ASSERT_TRUE(model.Forward(ids.data() + t_switch, L - t_switch, cont, ws, got.data(), true).ok());
  std::vector<float> tail(want.begin() + static_cast<size_t>(t_switch) * V, want.end());
  EXPECT_LT(MaxRel(got, tail), 1e-4);
  EXPECT_EQ(cont.pos, L);
}

INSTANTIATE_TEST_SUITE_P(Recurrence, OryxModelSwitch, ::testing::Values("ssd", "gdn"));

// A ragged batch of sequences with different schedules equals running each alone.
TEST(OryxModelBatch, SequencesWithDifferentSchedulesInOneCall) {
  auto mr = OryxStories("gdn");
  ASSERT_TRUE(mr.ok()) << mr.status().message();
  const Model& model = **mr;
  const int V = model.config().vocab_size;
  const std::vector<int> ids = StoryTokens(40);
  const char* specs[] = {"attention:0-12,recurrent:12-", "recurrent", "attention"};
  std::vector<SequenceState> seqs;
  std::vector<std::vector<float>> alone(3, std::vector<float>(static_cast<size_t>(V) * 40));
  for (int i = 0; i < 3; ++i) {
    SequenceState s = model.NewSequence(64).value();
    s.modes = ModeSchedule::Parse(specs[i]).value();
    Workspace ws(model, 64);
    ASSERT_TRUE(model.Forward(ids.data(), 30, s, ws, alone[i].data(), true).ok());
    for (int t = 30; t < 40; ++t)
      ASSERT_TRUE(model.Forward(&ids[t], 1, s, ws, alone[i].data() + static_cast<size_t>(t) * V).ok());
    SequenceState f = model.NewSequence(64).value();
    f.modes = s.modes;
    seqs.push_back(std::move(f));
  }
  Workspace ws(model, 128);
  std::vector<std::vector<float>> got(3, std::vector<float>(static_cast<size_t>(V) * 40));
  // Prefill of different lengths together, then decode steps together.
  const int n0[] = {30, 11, 30};
  std::vector<SeqInput> batch;
  for (int i = 0; i < 3; ++i) batch.push_back({ids.data(), n0[i], &seqs[i], got[i].data(), true});
  ASSERT_TRUE(model.Forward(batch, ws).ok());
  ASSERT_TRUE(model.Forward(&ids[11], 19, seqs[1], ws, got[1].data() + 11 * V, true).ok());
  for (int t = 30; t < 40; ++t) {
    batch.clear();
    for (int i = 0; i < 3; ++i) batch.push_back({&ids[t], 1, &seqs[i], got[i].data() + static_cast<size_t>(t) * V});
    ASSERT_TRUE(model.Forward(batch, ws).ok());
  }
  for (int i = 0; i < 3; ++i) EXPECT_LT(MaxRel(got[i], alone[i]), 5e-5) << specs[i];  // GEMM row counts differ
  EXPECT_GT(MaxRel(alone[0], alone[1]), 1e-2);  // the schedules matter
}

// Decode steps of a ragged batch in mixed modes allocate nothing (the counting operator new of
// src/model/batch_test.cc, linked into this binary).
TEST(OryxModelBatch, DecodeLoopDoesNotAllocate) {
  for (const char* rec : {"ssd", "gdn"}) {
    auto mr = OryxStories(rec);
    ASSERT_TRUE(mr.ok()) << mr.status().message();
    const Model& model = **mr;
    const int V = model.config().vocab_size, B = 3;
    const char* specs[] = {"attention:0-4,recurrent:4-", "recurrent", "attention"};
    Workspace ws(model, 32, Threads{2});
    std::vector<SequenceState> seqs;
    for (int i = 0; i < B; ++i) {
      seqs.push_back(model.NewSequence(200).value());
      seqs.back().modes = ModeSchedule::Parse(specs[i]).value();
    }
    std::vector<int> tok(B, 3);
    std::vector<float> logits(static_cast<size_t>(B) * V);
    std::vector<SeqInput> batch(B);
    auto step = [&] {
      for (int i = 0; i < B; ++i) batch[i] = SeqInput{&tok[i], 1, &seqs[i], logits.data() + static_cast<size_t>(i) * V};
      ASSERT_TRUE(model.Forward(batch, ws).ok());
      for (int i = 0; i < B; ++i) tok[i] = (tok[i] * 31 + 7) % V;
    };
    for (int i = 0; i < 16; ++i) step();  // warm-up
    subq::testing::g_allocations = 0;
    subq::testing::g_counting = true;
    for (int i = 0; i < 64; ++i) step();
    subq::testing::g_counting = false;
    EXPECT_EQ(subq::testing::g_allocations.load(), 0) << rec;
  }
}

TEST(ModeScheduleTest, ParsesFormsAndRejectsBadOnes) {
  auto a = ModeSchedule::Parse("prompt:attention,gen:recurrent", 10);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->At(9, MixerMode::kRecurrent), MixerMode::kAttention);
  EXPECT_EQ(a->At(10, MixerMode::kAttention), MixerMode::kRecurrent);
  auto b = ModeSchedule::Parse("attention:0-512,recurrent:512-");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ToString(), "attention:0-512,recurrent:512-");
  EXPECT_EQ(b->Count(MixerMode::kAttention, 0, 1024, MixerMode::kRecurrent), 512);
  EXPECT_EQ(ModeSchedule::Parse("recurrent")->At(0, MixerMode::kAttention), MixerMode::kRecurrent);
  for (const char* bad : {"", "attn:0-3", "attention:3-1", "attention:0-5,recurrent:4-", "attention:x-",
                          "prompt:attention", "attention"}) {
    if (std::string(bad) == "attention") continue;
    EXPECT_FALSE(ModeSchedule::Parse(bad).ok()) << bad;
  }
}

TEST(OryxConfigTest, ParsesOryxCfgAndRejectsBadValues) {
  std::ifstream f(DataDir() + "/stories260K/hf/config.json");
  nlohmann::json j = nlohmann::json::parse(f);
  j["oryx_cfg"] = {{"recurrence", "gdn"}, {"default_mode", "attention"}, {"layers", {0, 2}}};
  ModelConfig c;
  ASSERT_TRUE(ParseHfConfig(j, "config.json", &c).ok());
  EXPECT_EQ(c.layers[0].mixer, MixerKind::kOryx);
  EXPECT_EQ(c.layers[1].mixer, MixerKind::kAttention);
  EXPECT_EQ(c.oryx.recurrence, "gdn");
  EXPECT_EQ(c.oryx.default_mode, "attention");
  j["oryx_cfg"]["recurrence"] = "rnn";
  Status s = ParseHfConfig(j, "config.json", &c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("oryx_cfg.recurrence"), std::string::npos) << s.message();
  j["oryx_cfg"] = {{"layers", {9}}};
  EXPECT_FALSE(ParseHfConfig(j, "config.json", &c).ok());
}

}  // namespace
}  // namespace subq
