// Probe scoring on the real stories260K model: answers located in the tokens, oracle answers (the
// model's own greedy continuation, decoded one token at a time) scored right and altered ones wrong,
// batching that changes nothing, and stories260K's (near-zero) kv-retrieval accuracy.
#include "eval/probe_score.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "io/checkpoint.h"
#include "../../tests/test_util.h"

namespace subq {
namespace {

struct Stories {
  Checkpoint ck;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
};

Stories Load() {
  const std::string d = testing::DataDir() + "/stories260K/";
  Stories s;
  s.ck = ReadCheckpoint(d + "stories260K.bin").value();
  s.model = Model::FromCheckpoint(s.ck).value();
  s.tok = LoadTokenizer(d + "tok512.bin").value();
  return s;
}

// Greedy decode of `n` tokens after `prompt`, one Forward per token (independent of the scorer).
std::vector<int> GreedyAfter(const Model& m, const std::vector<int>& prompt, int n) {
  const int V = m.config().vocab_size;
  Workspace ws(m, static_cast<int>(prompt.size()));
  SequenceState s = m.NewSequence(static_cast<int>(prompt.size()) + n).value();
  std::vector<float> logits(V);
  EXPECT_TRUE(m.Forward(prompt.data(), static_cast<int>(prompt.size()), s, ws, logits.data()).ok());
  std::vector<int> out;
  for (int i = 0; i < n; ++i) {
    const int t = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(t);
    EXPECT_TRUE(m.Forward(&t, 1, s, ws, logits.data()).ok());
  }
  return out;
}

Result<ProbeResult> Score(const Model& m, const std::vector<TokenizedProbe>& p, int batch_tokens) {
  Workspace ws(m, ProbeWorkspaceTokens(p, batch_tokens));
  return ScoreProbe(m, p, ws);
}

TEST(ProbeScore, AnswersAreLocatedInTheTokensByEveryTokenizer) {
  const std::string d = testing::DataDir() + "/stories260K/";
  ProbeSpec mqar;
  mqar.name = "mqar";
  for (const ProbeSpec& spec : {ProbeSpec{}, mqar}) {
    const auto examples = GenerateProbe(spec, 10, 4).value();
    std::vector<std::vector<TokenizedProbe>> per_tokenizer;
    for (const std::string& path : {d + "tok512.bin", d + "tok512.model", d + "hf"}) {
      auto tok = LoadTokenizer(path).value();
      auto tp = TokenizeProbes(examples, *tok);
      ASSERT_TRUE(tp.ok()) << path << ": " << tp.status().message();
      for (size_t i = 0; i < examples.size(); ++i) {
        const auto answers = examples[i].Answers();
        ASSERT_EQ((*tp)[i].answers.size(), answers.size());
        for (size_t a = 0; a < answers.size(); ++a) {
          auto [b, e] = (*tp)[i].answers[a];
          // Decoding through the answer ends with the answer text.
          const std::string upto = tok->Decode(std::vector<int>((*tp)[i].tokens.begin(), (*tp)[i].tokens.begin() + e));
          EXPECT_EQ(upto.substr(upto.size() - answers[a].size()), answers[a]) << path;
          EXPECT_GT(b, 0);
        }
      }
      per_tokenizer.push_back(std::move(*tp));
    }
    for (size_t t = 1; t < per_tokenizer.size(); ++t)
      for (size_t i = 0; i < examples.size(); ++i) {
        EXPECT_EQ(per_tokenizer[t][i].tokens, per_tokenizer[0][i].tokens) << "tokenizer " << t;
        EXPECT_EQ(per_tokenizer[t][i].answers, per_tokenizer[0][i].answers) << "tokenizer " << t;
      }
  }
}

TEST(ProbeScore, OracleAnswersScoreRightAndAlteredOnesWrong) {
  Stories s = Load();
  ProbeSpec spec;
  spec.pairs = 8;
  const auto examples = GenerateProbe(spec, 12, 1).value();
  std::vector<TokenizedProbe> oracle, wrong;
  for (const auto& ex : examples) {
    // The oracle's answer is what the model itself decodes greedily after the question.
    const std::vector<int> prompt = s.tok->Encode(ex.pieces[0].text, true);
    const std::vector<int> greedy = GreedyAfter(*s.model, prompt, 2);
    TokenizedProbe o{prompt, {{static_cast<int>(prompt.size()), static_cast<int>(prompt.size()) + 2}}};
    o.tokens.insert(o.tokens.end(), greedy.begin(), greedy.end());
    TokenizedProbe w = o;
    w.tokens.back() = (w.tokens.back() + 1) % s.model->config().vocab_size;  // second answer token altered
    oracle.push_back(o);
    wrong.push_back(w);
  }
  const ProbeResult r = Score(*s.model, oracle, 2048).value();
  EXPECT_EQ(r.answers, 12);
  EXPECT_EQ(r.answers_correct, 12);
  EXPECT_EQ(r.examples_correct, 12);
  EXPECT_DOUBLE_EQ(r.accuracy(), 1.0);
  EXPECT_EQ(r.answer_tokens, 24);
  const ProbeResult rw = Score(*s.model, wrong, 2048).value();
  EXPECT_EQ(rw.answers_correct, 0);
  EXPECT_DOUBLE_EQ(rw.accuracy(), 0.0);
  EXPECT_GT(rw.answer_nll, r.answer_nll);
  // The predicted tokens are the greedy ones in both cases (teacher forcing keeps the first token right).
  EXPECT_EQ(rw.predicted, r.predicted);
}

TEST(ProbeScore, BatchingChangesNothing) {
  Stories s = Load();
  ProbeSpec mqar;
  mqar.name = "mqar", mqar.pairs = 10, mqar.queries = 4;
  const auto probes = TokenizeProbes(GenerateProbe(mqar, 9, 2).value(), *s.tok).value();
  const ProbeResult one = Score(*s.model, probes, 1).value();     // one example per call
  const ProbeResult all = Score(*s.model, probes, 100000).value();  // all examples in every call
  EXPECT_EQ(one.correct, all.correct);
  EXPECT_EQ(one.predicted, all.predicted);
  EXPECT_NEAR(one.answer_nll, all.answer_nll, 1e-5);
  EXPECT_EQ(all.answers, 36);
  EXPECT_EQ(one.tokens_fed, all.tokens_fed);
}

TEST(ProbeScore, Stories260KCannotRetrieve) {
  Stories s = Load();
  const auto probes = TokenizeProbes(GenerateProbe(ProbeSpec{}, 50, 0).value(), *s.tok).value();
  const ProbeResult r = Score(*s.model, probes, 2048).value();
  const Interval ci = r.ci95();
  std::printf("stories260K kv-retrieval (20 pairs, n 50, seed 0): accuracy %.3f, 95%% CI [%.3f, %.3f], answer "
              "loss %.3f nats/token\n", r.accuracy(), ci.low, ci.high, r.answer_nll);
  EXPECT_EQ(r.answers, 50);
  EXPECT_LT(r.accuracy(), 0.2);
  EXPECT_LE(ci.low, r.accuracy());
  EXPECT_GE(ci.high, r.accuracy());
  EXPECT_GT(r.answer_nll, 0.5);
}

TEST(ProbeScore, ExamplesBeyondTheContextLimitAreErrors) {
  Stories s = Load();
  ProbeSpec spec;
  spec.pairs = 100;  // ~700 tokens > stories260K's 512
  const auto probes = TokenizeProbes(GenerateProbe(spec, 2, 0).value(), *s.tok).value();
  auto r = Score(*s.model, probes, 2048);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("context limit of 512"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace subq
