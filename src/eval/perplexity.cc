#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

namespace subq {
namespace {

class ModelLogits : public LogitsSource {
 public:
  ModelLogits(const Model& m, int rows, ModeSchedule modes)
      : m_(m), ws_(m, std::max(1, std::min(rows, 512))), modes_(std::move(modes)) {}
  int vocab() const override { return m_.config().vocab_size; }
  int context_limit() const override { return m_.context_limit(); }
  bool has_attention() const override { return m_.has_attention(); }
  Status Begin(int context) override {
    SUBQ_ASSIGN_OR_RETURN(seq_, m_.NewSequence(m_.has_attention() ? context : 0));
    seq_.modes = modes_;
    return Status::Ok();
  }
  Status Feed(const int* tokens, int n, float* logits) override {
    return m_.Forward(tokens, n, seq_, ws_, logits, /*all_logits=*/true);
  }

 private:
  const Model& m_;
  Workspace ws_;
  SequenceState seq_;
  ModeSchedule modes_;
};

}  // namespace

std::unique_ptr<LogitsSource> LogitsOf(const Model& model, int rows, const ModeSchedule& modes) {
  return std::make_unique<ModelLogits>(model, rows, modes);
}

Result<PerplexityResult> Perplexity(const Model& model, const std::vector<int>& tokens, int window, int stride,
                                    const std::function<void(int64_t, int64_t)>& progress, int piece) {
  if (piece < 0) return Errorf("perplexity: piece must be >= 0, got {}", piece);
  auto src = LogitsOf(model, piece > 0 ? piece : window);
  return Perplexity(*src, tokens, window, stride, progress, piece);
}

Result<PerplexityResult> Perplexity(LogitsSource& src, const std::vector<int>& tokens, int window, int stride,
                                    const std::function<void(int64_t, int64_t)>& progress, int piece) {
  const int V = src.vocab();
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2) return Errorf("perplexity: need at least 2 tokens, got {}", n);
  if (window < 2) return Errorf("perplexity: window must be >= 2, got {}", window);
  if (stride < 1 || stride > window) return Errorf("perplexity: stride must be in 1..window, got {}", stride);
  if (window > src.context_limit())
    return Errorf("perplexity: window {} exceeds the model's context limit of {} tokens", window, src.context_limit());
  if (piece < 0) return Errorf("perplexity: piece must be >= 0, got {}", piece);
  std::vector<float> logits(static_cast<size_t>(window) * V);
  double nll = 0.0;
  int64_t scored = 0;
  int64_t next_target = 1;  // first token position not yet scored
  for (int64_t begin = 0; next_target < n; begin += stride) {
    const int64_t end = std::min(n, begin + window);
    const int L = static_cast<int>(end - begin);
    if (L < 2) break;
    SUBQ_RETURN_IF_ERROR(src.Begin(window));
    const int step = piece > 0 ? piece : L;
    for (int t0 = 0; t0 < L; t0 += step)
      SUBQ_RETURN_IF_ERROR(src.Feed(tokens.data() + begin + t0, std::min(step, L - t0),
                                    logits.data() + static_cast<size_t>(t0) * V));
    for (int64_t pos = std::max(next_target, begin + 1); pos < end; ++pos) {
      const float* row = logits.data() + static_cast<size_t>(pos - 1 - begin) * V;  // predicts token at pos
      const float mx = *std::max_element(row, row + V);
      double s = 0.0;
      for (int v = 0; v < V; ++v) s += std::exp(static_cast<double>(row[v] - mx));
      nll += (std::log(s) + mx) - row[tokens[pos]];
      ++scored;
    }
    next_target = end;
    if (progress) progress(next_target, n);
    if (end == n) break;
  }
  PerplexityResult r;
  r.tokens = scored;
  r.nll = nll / static_cast<double>(scored);
  r.perplexity = std::exp(r.nll);
  return r;
}

}  // namespace subq
