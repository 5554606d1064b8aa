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
// Each window is fed to the model in pieces of `piece` tokens (0: the whole window in one call); piece 1
// scores the decode path, where the recurrent state is stored (e.g. in bf16) after every token.
Result<PerplexityResult> Perplexity(const Model& model, const std::vector<int>& tokens, int window, int stride,
                                    const std::function<void(int64_t, int64_t)>& progress = {}, int piece = 0);

}  // namespace subq
