#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace subq {

Status ValidateSamplerConfig(const SamplerConfig& c) {
  if (!std::isfinite(c.temperature) || c.temperature < 0.0f)
    return Errorf("temperature {} is invalid (a finite number >= 0; 0 = greedy)", c.temperature);
  if (!std::isfinite(c.top_p) || c.top_p <= 0.0f || c.top_p > 1.0f)
    return Errorf("top-p {} is invalid (a number in (0, 1]; 1 = off)", c.top_p);
  if (c.top_k < 0) return Errorf("top-k {} is invalid (>= 0; 0 = off)", c.top_k);
  return Status::Ok();
}

Status CheckLogitsFinite(const float* logits, int vocab) {
  for (int i = 0; i < vocab; ++i)
    if (!std::isfinite(logits[i]))
      return Errorf("the model produced a non-finite logit ({} for token {}); stopping", logits[i], i);
  return Status::Ok();
}

int Sampler::Sample(float* logits, int vocab) {
  if (c_.temperature <= 0.0f) return static_cast<int>(std::max_element(logits, logits + vocab) - logits);
  return SampleWithUniform(c_, logits, vocab, NextUniform(), &idx_);
}

int SampleWithUniform(const SamplerConfig& c_, float* logits, int vocab, double u01, std::vector<int>* idx) {
  if (c_.temperature <= 0.0f) return static_cast<int>(std::max_element(logits, logits + vocab) - logits);
  std::vector<int>& idx_ = *idx;
  idx_.resize(vocab);
  std::iota(idx_.begin(), idx_.end(), 0);
  int n = vocab;
  if (c_.top_k > 0 && c_.top_k < vocab) {
    std::partial_sort(idx_.begin(), idx_.begin() + c_.top_k, idx_.end(),
                      [&](int a, int b) { return logits[a] > logits[b]; });
    n = c_.top_k;
  } else {
    std::sort(idx_.begin(), idx_.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  }
  // softmax over the n candidates at temperature T
  const float mx = logits[idx_[0]];
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    logits[idx_[i]] = std::exp((logits[idx_[i]] - mx) / c_.temperature);
    sum += logits[idx_[i]];
  }
  if (c_.top_p < 1.0f) {  // keep the smallest prefix with mass >= top_p
    double acc = 0.0;
    int keep = n;
    for (int i = 0; i < n; ++i) {
      acc += logits[idx_[i]] / sum;
      if (acc >= c_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    sum = 0.0;
    for (int i = 0; i < n; ++i) sum += logits[idx_[i]];
  }
  double r = u01 * sum, acc = 0.0;
  for (int i = 0; i < n; ++i) {
    acc += logits[idx_[i]];
    if (r < acc) return idx_[i];
  }
  return idx_[n - 1];
}

}  // namespace subq
