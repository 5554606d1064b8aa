// Token sampling: greedy (temperature 0), temperature, top-k, top-p, seeded.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "util/status.h"

namespace subq {

struct SamplerConfig {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
};

// Errors for parameters that would sample garbage: NaN or infinite values, a negative temperature or
// top-k, top-p outside (0, 1].
Status ValidateSamplerConfig(const SamplerConfig& c);
// An error naming the first NaN/Inf logit (a model that produces them would otherwise emit garbage).
Status CheckLogitsFinite(const float* logits, int vocab);

// The token Sampler::Sample picks for the uniform draw u in [0, 1): greedy at temperature 0; else softmax at
// the temperature over the top_k largest logits (0: all), cut to the smallest prefix (descending) of mass
// >= top_p, and the first token whose descending cumulative mass exceeds u times the kept mass. logits are
// modified in place; idx is scratch.
int SampleWithUniform(const SamplerConfig& c, float* logits, int vocab, double u, std::vector<int>* idx);

class Sampler {
 public:
  explicit Sampler(SamplerConfig c) : c_(c), rng_(c.seed) {}
  // Picks a token from logits [vocab] (logits are modified in place).
  int Sample(float* logits, int vocab);
  // The uniform number in [0, 1) that the next non-greedy Sample would draw (the GPU sampler draws its
  // numbers here, so a seed gives the same stream on both devices).
  double NextUniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

 private:
  SamplerConfig c_;
  std::mt19937_64 rng_;
  std::vector<int> idx_;  // reused scratch
};

}  // namespace subq
