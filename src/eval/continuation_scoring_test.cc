// ScoreContinuations against a plain reference (each request fed whole as one sequence, every position's
// logits, log-softmax in double), over ragged batches cut at every size; choice accuracy by hand; the
// lm-eval pair split; bad requests.
#include "eval/continuation_scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "model/model_test_util.h"
#include "../../tests/test_util.h"

namespace subq {
namespace {

struct Ref {
  double logprob = 0.0;
  bool greedy = true;
};

Ref Reference(const Model& m, const ContinuationRequest& r) {
  std::vector<int> all = r.context;
  all.insert(all.end(), r.continuation.begin(), r.continuation.end());
  const int V = m.config().vocab_size, L = static_cast<int>(all.size());
  auto seq = m.NewSequence(L);
  EXPECT_TRUE(seq.ok());
  Workspace ws(m, L);
  std::vector<float> logits(static_cast<size_t>(L) * V);
  EXPECT_TRUE(m.Forward(all.data(), L, *seq, ws, logits.data(), true).ok());
  Ref out;
  for (size_t k = 0; k < r.continuation.size(); ++k) {
    const float* row = logits.data() + (r.context.size() - 1 + k) * V;
    double mx = row[0], s = 0.0;
    int best = 0;
    for (int v = 0; v < V; ++v)
      if (row[v] > row[best]) best = v;
    mx = row[best];
    for (int v = 0; v < V; ++v) s += std::exp(row[v] - mx);
    out.logprob += row[r.continuation[k]] - mx - std::log(s);
    out.greedy = out.greedy && best == r.continuation[k];
  }
  return out;
}

std::vector<ContinuationRequest> RandomRequests(int n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<ContinuationRequest> reqs(n);
  for (auto& r : reqs) {
    r.context.resize(1 + rng() % 20);
    r.continuation.resize(1 + rng() % 6);
    for (int& t : r.context) t = static_cast<int>(rng() % vocab);
    for (int& t : r.continuation) t = static_cast<int>(rng() % vocab);
  }
  return reqs;
}

class Scoring : public ::testing::TestWithParam<const char*> {};

TEST_P(Scoring, BatchedEqualsOneSequenceAtATime) {
  const ModelConfig cfg = testing::RandomModelConfig(GetParam());
  auto mr = testing::RandomModel(cfg, 3);
  ASSERT_TRUE(mr.ok()) << mr.status().message();
  const Model& m = **mr;
  auto reqs = RandomRequests(9, cfg.vocab_size, 4);
  std::vector<Ref> ref;
  for (const auto& r : reqs) ref.push_back(Reference(m, r));
  for (auto [tokens, seqs] : {std::pair{512, 64}, std::pair{7, 3}, std::pair{1, 1}, std::pair{16, 2}}) {
    ScoringOptions o;
    o.batch_tokens = tokens, o.max_sequences = seqs;
    auto got = ScoreContinuations(m, reqs, o);
    ASSERT_TRUE(got.ok()) << got.status().message();
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_NEAR((*got)[i].logprob, ref[i].logprob, 1e-3 * (1 + std::fabs(ref[i].logprob)))
          << GetParam() << " request " << i << " batch " << tokens << "/" << seqs;
      EXPECT_EQ((*got)[i].token_logprobs.size(), reqs[i].continuation.size());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Scoring, ::testing::Values("llama", "mamba2", "llamba", "gated_deltanet"));

TEST(Scoring, RealModelGreedyContinuationIsGreedy) {
  auto ck = ReadCheckpoint(testing::DataDir() + "/stories260K/stories260K.bin");
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto model = Model::FromCheckpoint(*ck);
  auto tokp = TokenizerForCheckpoint(*ck);
  ASSERT_TRUE(model.ok() && tokp.ok());
  const Tokenizer& tok = **tokp;
  const Model& m = **model;
  // The model's own greedy continuation of "Once upon a time" (data README) is greedy; a rare word is not.
  auto greedy = EncodeContinuationPair(tok, "Once upon a time,", " there was a little girl", true);
  auto odd = EncodeContinuationPair(tok, "Once upon a time,", " purple elephants", true);
  auto got = ScoreContinuations(m, {greedy, odd});
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_TRUE((*got)[0].greedy);
  EXPECT_FALSE((*got)[1].greedy);
  EXPECT_GT((*got)[0].logprob, (*got)[1].logprob);
  const Ref r = Reference(m, greedy);
  EXPECT_NEAR((*got)[0].logprob, r.logprob, 1e-4);
}

TEST(Scoring, PairSplitMovesTrailingSpaceAndMatchesWholeEncoding) {
  auto tok = LoadTokenizer(testing::DataDir() + "/stories260K/tok512.model");
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  const auto a = EncodeContinuationPair(**tok, "Lily went to the ", "park", true);
  const auto b = EncodeContinuationPair(**tok, "Lily went to the", " park", true);
  EXPECT_EQ(a.context, b.context);
  EXPECT_EQ(a.continuation, b.continuation);
  std::vector<int> whole = a.context;
  whole.insert(whole.end(), a.continuation.begin(), a.continuation.end());
  EXPECT_EQ(whole, (*tok)->Encode("Lily went to the park", true));
  EXPECT_EQ(a.context.front(), (*tok)->bos_id());
  const auto empty = EncodeContinuationPair(**tok, "", "Lily", true);
  EXPECT_EQ(empty.context, std::vector<int>{(*tok)->bos_id()});
}

TEST(Scoring, ChoiceAccuracyCountsLikeLmEval) {
  // acc: argmax of the sums; acc_norm: argmax of sum / characters ("é" is one character, two bytes).
  std::vector<ChoiceItem> items = {{"c", {"aa", "b"}, 0}, {"c", {"éé", "xxxx"}, 1}};
  std::vector<ContinuationScore> s(4);
  s[0].logprob = -2.0, s[1].logprob = -1.5;  // acc picks 1 (wrong), norm: -1.0 vs -1.5 picks 0 (right)
  s[2].logprob = -1.0, s[3].logprob = -3.0;  // acc picks 0 (wrong), norm: -0.5 vs -0.75 picks 0 (wrong)
  auto a = ChoiceAccuracyFromScores(items, s);
  ASSERT_TRUE(a.ok());
  EXPECT_DOUBLE_EQ(a->acc, 0.0);
  EXPECT_DOUBLE_EQ(a->acc_norm, 0.5);
  EXPECT_EQ(a->items, 2);
  s.pop_back();
  EXPECT_FALSE(ChoiceAccuracyFromScores(items, s).ok());
}

TEST(Scoring, BadRequestsAreErrors) {
  auto mr = testing::RandomModel(testing::RandomModelConfig("llama"), 1);
  ASSERT_TRUE(mr.ok());
  auto e1 = ScoreContinuations(**mr, {{{}, {1}}});
  ASSERT_FALSE(e1.ok());
  EXPECT_NE(e1.status().message().find("request 0: the context has no tokens"), std::string::npos);
  auto e2 = ScoreContinuations(**mr, {{{1}, {2}}, {{1}, {}}});
  ASSERT_FALSE(e2.ok());
  EXPECT_NE(e2.status().message().find("request 1"), std::string::npos);
  std::vector<int> longer((*mr)->context_limit() + 1, 1);
  auto e3 = ScoreContinuations(**mr, {{longer, {2}}});
  ASSERT_FALSE(e3.ok());
  EXPECT_NE(e3.status().message().find("context limit"), std::string::npos);
}

}  // namespace
}  // namespace subq
