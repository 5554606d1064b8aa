// Perplexity of a model over a token stream with a sliding window: each window of `window` tokens
// starts from a fresh sequence, and only tokens not scored by an earlier window count (stride apart).
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "model/model.h"

namespace subq {

struct PerplexityResult {
  double nll = 0.0;  // mean negative log-likelihood (nats/token)
  double perplexity = 0.0;
  int64_t tokens = 0;  // tokens scored
};

// What the scoring runs on: the CPU engine (LogitsOf(Model)) or another device's runner
// (apps/cuda_device.h). One sequence at a time.
class LogitsSource {
 public:
  virtual ~LogitsSource() = default;
  virtual int vocab() const = 0;
  virtual int context_limit() const = 0;  // INT_MAX: unlimited
  virtual bool has_attention() const = 0;
  // Starts a fresh sequence that will hold up to `context` tokens.
  virtual Status Begin(int context) = 0;
  // Feeds n tokens to the sequence and writes every one's logits to logits [n, vocab].
  virtual Status Feed(const int* tokens, int n, float* logits) = 0;
};

// The CPU engine as a LogitsSource: Feed runs Model::Forward in pieces of at most `rows` rows. Every
// sequence it begins runs Oryx layers by `modes` (positions counted from the window's start).
std::unique_ptr<LogitsSource> LogitsOf(const Model& model, int rows, const ModeSchedule& modes = {});

// progress(done, total) is called after each window when given.
// Each window is fed to the model in pieces of `piece` tokens (0: the whole window in one call); piece 1
// scores the decode path, where the recurrent state is stored (e.g. in bf16) after every token.
Result<PerplexityResult> Perplexity(LogitsSource& source, const std::vector<int>& tokens, int window, int stride,
                                    const std::function<void(int64_t, int64_t)>& progress = {}, int piece = 0);
Result<PerplexityResult> Perplexity(const Model& model, const std::vector<int>& tokens, int window, int stride,
                                    const std::function<void(int64_t, int64_t)>& progress = {}, int piece = 0);

}  // namespace subq
