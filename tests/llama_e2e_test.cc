// End-to-end: the real stories260K checkpoint in all three formats generates the published text.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "model/sampler.h"
#include "test_util.h"

namespace subq {
namespace {

std::string Greedy(const std::string& model_path, const std::string& tok_path, const std::string& prompt, int n) {
  auto ck = ReadCheckpoint(model_path);
  EXPECT_TRUE(ck.ok()) << ck.status().message();
  if (!ck.ok()) return "";
  auto model = Model::FromCheckpoint(*ck);
  EXPECT_TRUE(model.ok()) << model.status().message();
  if (!model.ok()) return "";
  auto tok = tok_path.empty() ? TokenizerForCheckpoint(*ck) : LoadTokenizer(tok_path);
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  if (!tok.ok()) return "";
  std::vector<int> ids = (*tok)->Encode(prompt, true);
  SequenceState seq = (*model)->NewSequence().value();
  Workspace ws(**model, 64);
  std::vector<float> logits((*model)->config().vocab_size);
  EXPECT_TRUE((*model)->Forward(ids.data(), ids.size(), seq, ws, logits.data()).ok());
  Sampler s({});
  std::vector<int> out = ids;
  for (int i = 0; i < n; ++i) {
    int t = s.Sample(logits.data(), logits.size());
    if (t == (*tok)->eos_id()) break;
    out.push_back(t);
    EXPECT_TRUE((*model)->Forward(&t, 1, seq, ws, logits.data()).ok());
  }
  return (*tok)->Decode(out);
}

const char* kPublished =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

TEST(LlamaE2E, Stories260KAllFormatsGiveThePublishedGreedyText) {
  const std::string d = testing::DataDir() + "/stories260K/";
  std::string bin = Greedy(d + "stories260K.bin", d + "tok512.bin", "Once upon a time", 40);
  std::string gguf = Greedy(d + "stories260K.gguf", "", "Once upon a time", 40);
  std::string hf = Greedy(d + "hf", "", "Once upon a time", 40);
  EXPECT_EQ(bin.rfind(kPublished, 0), 0u) << bin;
  EXPECT_EQ(bin, gguf);
  EXPECT_EQ(bin, hf);
}

TEST(LlamaE2E, SnapshotRestoreGivesBitIdenticalLogits) {
  const std::string d = testing::DataDir() + "/stories260K/";
  auto ck = ReadCheckpoint(d + "stories260K.bin");
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto model = Model::FromCheckpoint(*ck);
  ASSERT_TRUE(model.ok());
  Model& m = **model;
  std::vector<int> ids = {1, 403, 407, 261, 378, 282, 261, 1253 % 512, 45, 90};
  SequenceState seq = m.NewSequence().value();
  Workspace ws(m, 64);
  const int V = m.config().vocab_size;
  std::vector<float> a(V), b(V);
  ASSERT_TRUE(m.Forward(ids.data(), 6, seq, ws, a.data()).ok());
  SequenceState snap = seq.Snapshot();
  ASSERT_TRUE(m.Forward(ids.data() + 6, 4, seq, ws, a.data()).ok());
  seq.Restore(snap);
  EXPECT_EQ(seq.pos, 6);
  ASSERT_TRUE(m.Forward(ids.data() + 6, 4, seq, ws, b.data()).ok());
  EXPECT_EQ(a, b);
}

TEST(LlamaE2E, PrefillEqualsStepping) {
  const std::string d = testing::DataDir() + "/stories260K/";
  auto ck = ReadCheckpoint(d + "stories260K.bin");
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto model = Model::FromCheckpoint(*ck);
  ASSERT_TRUE(model.ok());
  Model& m = **model;
  const int V = m.config().vocab_size;
  std::vector<int> ids = {1, 403, 407, 261, 378, 282, 261, 45, 90, 300, 12, 77};
  const int L = ids.size();
  std::vector<float> all(static_cast<size_t>(L) * V), one(V);
  SequenceState s1 = m.NewSequence().value();
  Workspace ws(m, 64);
  ASSERT_TRUE(m.Forward(ids.data(), L, s1, ws, all.data(), true).ok());
  SequenceState s2 = m.NewSequence().value();
  for (int t = 0; t < L; ++t) {
    ASSERT_TRUE(m.Forward(&ids[t], 1, s2, ws, one.data()).ok());
    for (int v = 0; v < V; ++v) ASSERT_NEAR(one[v], all[static_cast<size_t>(t) * V + v], 1e-4) << t << " " << v;
  }
}

}  // namespace
}  // namespace subq
