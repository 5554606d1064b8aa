#include "model/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
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

TEST(Sampler, RejectsNonFiniteAndOutOfRangeParameters) {
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(ValidateSamplerConfig({}).ok());
  EXPECT_TRUE(ValidateSamplerConfig({.temperature = 0.8f, .top_k = 40, .top_p = 0.9f}).ok());
  for (SamplerConfig bad : {SamplerConfig{.temperature = nan}, SamplerConfig{.temperature = inf},
                            SamplerConfig{.temperature = -1.0f}, SamplerConfig{.top_p = nan},
                            SamplerConfig{.top_p = 0.0f}, SamplerConfig{.top_p = 1.5f}, SamplerConfig{.top_k = -3}})
    EXPECT_FALSE(ValidateSamplerConfig(bad).ok());
}

TEST(Sampler, NonFiniteLogitsAreAnError) {
  std::vector<float> l = {0.1f, 3.0f, -1.0f};
  EXPECT_TRUE(CheckLogitsFinite(l.data(), 3).ok());
  l[2] = std::nanf("");
  const Status st = CheckLogitsFinite(l.data(), 3);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("token 2"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace subq
