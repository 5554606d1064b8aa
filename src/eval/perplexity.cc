#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

namespace subq {

Result<PerplexityResult> Perplexity(const Model& model, const std::vector<int>& tokens, int window, int stride,
                                    const std::function<void(int64_t, int64_t)>& progress, int piece) {
  const int V = model.config().vocab_size;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2) return Errorf("perplexity: need at least 2 tokens, got {}", n);
  if (window < 2) return Errorf("perplexity: window must be >= 2, got {}", window);
  if (stride < 1 || stride > window) return Errorf("perplexity: stride must be in 1..window, got {}", stride);
  if (window > model.context_limit())
    return Errorf("perplexity: window {} exceeds the model's context limit of {} tokens", window, model.context_limit());
  std::vector<float> logits(static_cast<size_t>(window) * V);
  if (piece < 0) return Errorf("perplexity: piece must be >= 0, got {}", piece);
  Workspace ws(model, piece > 0 ? std::min(piece, 512) : std::min(window, 512));
  double nll = 0.0;
  int64_t scored = 0;
  int64_t next_target = 1;  // first token position not yet scored
  for (int64_t begin = 0; next_target < n; begin += stride) {
    const int64_t end = std::min(n, begin + window);
    const int L = static_cast<int>(end - begin);
    if (L < 2) break;
    SUBQ_ASSIGN_OR_RETURN(SequenceState seq, model.NewSequence(model.has_attention() ? window : 0));
    const int step = piece > 0 ? piece : L;
    for (int t0 = 0; t0 < L; t0 += step)
      SUBQ_RETURN_IF_ERROR(model.Forward(tokens.data() + begin + t0, std::min(step, L - t0), seq, ws,
                                         logits.data() + static_cast<size_t>(t0) * V, /*all_logits=*/true));
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
