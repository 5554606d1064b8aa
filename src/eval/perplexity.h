// Perplexity of a model over a token stream with a sliding window: each window of `window` tokens
// starts from a fresh sequence, and only tokens not scored by an earlier window count (stride apart).
#pragma once
#include <functional>
#include <vector>

#include "model/model.h"

namespace subq {

struct PerplexityResult {
  double nll = 0.0;  // mean negative log-likelihood (nats/token)
  double perplexity = 0.0;
  int64_t tokens = 0;  // tokens scored
};

// progress(done, total) is called after each window when given.
Result<PerplexityResult> Perplexity(const Model& model, const std::vector<int>& tokens, int window, int stride,
                                    const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace subq
