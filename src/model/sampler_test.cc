#include "model/sampler.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace subq {
namespace {

TEST(Sampler, GreedyPicksArgmax) {
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.9f};
  Sampler s({});
  EXPECT_EQ(s.Sample(l.data(), 4), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
  Sampler s({.temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .seed = 7});
  for (int i = 0; i < 20; ++i) {
    std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.9f};
    EXPECT_EQ(s.Sample(l.data(), 4), 1);
  }
}

TEST(Sampler, TopPExcludesTail) {
  // probabilities ~ {0.47, 0.47, 0.06}: top_p 0.9 keeps only the first two.
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 0.9f, .seed = 3});
  for (int i = 0; i < 200; ++i) {
    std::vector<float> l = {2.0f, 2.0f, 0.0f};
    EXPECT_NE(s.Sample(l.data(), 3), 2);
  }
}

TEST(Sampler, TemperatureFollowsDistributionAndSeedRepeats) {
  auto draw = [](uint64_t seed) {
    Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = seed});
    std::map<int, int> counts;
    std::vector<int> seq;
    for (int i = 0; i < 4000; ++i) {
      std::vector<float> l = {0.0f, std::log(3.0f)};  // p = {0.25, 0.75}
      int t = s.Sample(l.data(), 2);
      counts[t]++;
      seq.push_back(t);
    }
    return std::make_pair(counts, seq);
  };
  auto [c1, s1] = draw(42);
  auto [c2, s2] = draw(42);
  EXPECT_EQ(s1, s2);
  EXPECT_NEAR(c1[1] / 4000.0, 0.75, 0.03);
}

}  // namespace
}  // namespace subq
