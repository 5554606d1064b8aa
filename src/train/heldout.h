// Held-out perplexity, one definition for trainer and engine: the trainer scores its held-out documents
// with the engine's code (eval/perplexity.h: per-document BOS, sliding window of `window` tokens, stride
// window / 2) through a LogitsSource over the torch teacher or student, on the tokens `subq eval --text`
// reads from the held_out.txt it writes. So `subq eval --model OUT --text OUT/held_out.txt --window W`
// prints the student perplexity the trainer printed.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eval/perplexity.h"
#include "io/tokenizer.h"
#include "util/status.h"

namespace subq::train {

// `logits` maps ids [1, L] -> [1, L, V] on `dev`; context_limit INT_MAX for recurrent models. Feed
// recomputes the whole sequence so far (the scorer feeds each window in one piece, so that is one pass).
std::unique_ptr<LogitsSource> TorchLogits(std::function<torch::Tensor(const torch::Tensor&)> logits, int vocab,
                                          int context_limit, bool has_attention, const torch::Device& dev);

struct HeldOutSet {
  std::vector<int> tokens;  // TokenizeTextFile(path): what `subq eval --text path` scores
  int64_t docs = 0;
  int window = 0, stride = 0;
};

// The first held-out documents of `text` (split on `separator`) that reach max_tokens + 1 tokens (at least
// one), written to `path` separated by <|endoftext|> (the engine's separator) and read back with the
// engine's tokenizer path. window = min(512, max_window) as `subq eval` defaults, stride window / 2.
Result<HeldOutSet> WriteHeldOut(const std::string& text, const std::string& separator, const Tokenizer& tok,
                                int64_t max_tokens, int max_window, const std::string& path);

}  // namespace subq::train
