// Head ranking on the real stories260K model: deterministic, sorted, its baseline the unmasked score and
// its per-head numbers those of scoring with that head zeroed; the random control is a seeded permutation.
#include "eval/head_ranking.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "io/checkpoint.h"
#include "model/model_test_util.h"
#include "../../tests/test_util.h"

namespace subq {
namespace {

struct Fixture {
  Checkpoint ck;
  std::unique_ptr<Model> model;
  std::vector<TokenizedProbe> probes;
};

Fixture Load() {
  const std::string d = testing::DataDir() + "/stories260K/";
  Fixture f;
  f.ck = ReadCheckpoint(d + "stories260K.bin").value();
  f.model = Model::FromCheckpoint(f.ck).value();
  auto tok = LoadTokenizer(d + "tok512.bin").value();
  ProbeSpec spec;
  spec.pairs = 6;
  f.probes = TokenizeProbes(GenerateProbe(spec, 10, 3).value(), *tok).value();
  return f;
}

TEST(HeadRanking, AblationRankingIsDeterministicSortedAndMeasured) {
  Fixture f = Load();
  const HeadRanking a = RankHeadsByAblation(*f.model, f.probes).value();
  const HeadRanking b = RankHeadsByAblation(*f.model, f.probes).value();
  EXPECT_EQ(HeadRankingJson(a).dump(), HeadRankingJson(b).dump());
  ASSERT_EQ(a.heads.size(), 40u);  // 5 layers x 8 heads
  std::set<std::pair<int, int>> seen;
  for (size_t i = 0; i < a.heads.size(); ++i) {
    seen.insert({a.heads[i].layer, a.heads[i].head});
    if (i == 0) continue;
    const HeadScore &p = a.heads[i - 1], &q = a.heads[i];
    EXPECT_TRUE(p.accuracy_drop > q.accuracy_drop ||
                (p.accuracy_drop == q.accuracy_drop && p.loss_increase >= q.loss_increase))
        << "rank " << i;
  }
  EXPECT_EQ(seen.size(), 40u);
  // Baseline: the unmasked score; a head's numbers: the score with it zeroed, computed again here.
  Workspace ws(*f.model, ProbeWorkspaceTokens(f.probes));
  const ProbeResult base = ScoreProbe(*f.model, f.probes, ws).value();
  EXPECT_EQ(a.baseline.correct, base.correct);
  EXPECT_DOUBLE_EQ(a.baseline.answer_nll, base.answer_nll);
  const HeadScore& top = a.heads[0];
  std::vector<uint8_t> zero(8, 0);
  zero[top.head] = 1;
  ASSERT_TRUE(ws.SetZeroedHeads(top.layer, zero).ok());
  const ProbeResult masked = ScoreProbe(*f.model, f.probes, ws).value();
  EXPECT_DOUBLE_EQ(top.answer_nll, masked.answer_nll);
  EXPECT_DOUBLE_EQ(top.loss_increase, masked.answer_nll - base.answer_nll);
  EXPECT_GT(std::abs(top.loss_increase), 0.0) << "zeroing the top head changed nothing";
  const nlohmann::json j = HeadRankingJson(a);
  EXPECT_EQ(j["method"], "ablation");
  EXPECT_EQ(j["heads"][0]["rank"], 1);
  EXPECT_TRUE(j["heads"][0].contains("loss_increase"));
  EXPECT_TRUE(j.contains("baseline"));
}

TEST(HeadRanking, RandomControlIsASeededPermutation) {
  Fixture f = Load();
  const HeadRanking a = RandomHeadRanking(*f.model, 1).value(), b = RandomHeadRanking(*f.model, 1).value();
  const HeadRanking c = RandomHeadRanking(*f.model, 2).value();
  auto order = [](const HeadRanking& r) {
    std::vector<std::pair<int, int>> o;
    for (const auto& h : r.heads) o.emplace_back(h.layer, h.head);
    return o;
  };
  EXPECT_EQ(order(a), order(b));
  EXPECT_NE(order(a), order(c));
  std::vector<std::pair<int, int>> sorted = order(a);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, AttentionHeads(*f.model));
  EXPECT_NE(order(a), AttentionHeads(*f.model));
  const nlohmann::json j = HeadRankingJson(a);
  EXPECT_EQ(j["method"], "random");
  EXPECT_EQ(j["seed"], 1);
  EXPECT_FALSE(j["heads"][0].contains("accuracy_drop"));
}

TEST(HeadRanking, AModelWithoutAttentionHasNoHeadsToRank) {
  auto m = testing::RandomModel(testing::RandomModelConfig("llamba"), 1).value();
  EXPECT_NE(RandomHeadRanking(*m, 0).status().message().find("no attention layer"), std::string::npos);
  EXPECT_NE(RankHeadsByAblation(*m, {}).status().message().find("no attention layer"), std::string::npos);
}

}  // namespace
}  // namespace subq
