// Log-likelihood of continuations given contexts: the quantity multiple-choice benchmarks score
// (lm-evaluation-harness's `loglikelihood`), computed over many requests at once through the ragged
// batched Model::Forward. Each request is its own sequence: the context is prefilled without logits,
// then the last context token and the continuation (less its last token) are fed with every position's
// logits, turned into log-probabilities piece by piece (only [batch tokens, vocab] floats are held).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "io/tokenizer.h"
#include "model/model.h"
#include "util/threads.h"

namespace subq {

struct ContinuationRequest {
  std::vector<int> context;       // >= 1 token (e.g. BOS)
  std::vector<int> continuation;  // >= 1 token
};

struct ContinuationScore {
  double logprob = 0.0;              // sum of log p(continuation token | everything before it)
  bool greedy = true;                // every continuation token was the argmax
  std::vector<float> token_logprobs;  // per continuation token
};

struct ScoringOptions {
  int batch_tokens = 512;  // tokens per Forward call, all sequences together
  int max_sequences = 64;  // sequences in flight at once
  Threads threads = Threads::Default();
};

// Scores in the order given. Errors name the request (index) that is empty or too long for the model.
Result<std::vector<ContinuationScore>> ScoreContinuations(const Model& model,
                                                          const std::vector<ContinuationRequest>& requests,
                                                          const ScoringOptions& opt = {},
                                                          const std::function<void(size_t, size_t)>& progress = {});

// Token ids of a (context, continuation) pair as lm-evaluation-harness splits them: whitespace at the
// end of the context moves to the continuation, the pair is encoded whole and the continuation is what
// follows the tokens of the context alone (so SentencePiece's leading-space handling matches a full
// encode). add_bos prepends BOS to the context; an empty context is then just BOS.
ContinuationRequest EncodeContinuationPair(const Tokenizer& tok, const std::string& context,
                                           const std::string& continuation, bool add_bos);

// A multiple-choice item: one context, several endings, the index of the right one.
struct ChoiceItem {
  std::string context;
  std::vector<std::string> endings;
  int label = 0;
};

struct ChoiceAccuracy {
  double acc = 0.0;       // argmax of the summed log-likelihood is the label
  double acc_norm = 0.0;  // argmax of log-likelihood / characters of the ending (lm-eval's acc_norm)
  int items = 0;
};

// Reads multiple-choice items from JSONL: one object per line with "context" (string), "endings" (strings)
// and "label" (index of the right ending). Blank lines are skipped; errors name the line.
Result<std::vector<ChoiceItem>> ReadChoiceJsonl(const std::string& path);

// Scores every ending of every item as lm-eval's multiple_choice task does: the request is
// (context, delimiter + ending), split by EncodeContinuationPair with BOS.
Result<ChoiceAccuracy> ScoreChoices(const Model& model, const Tokenizer& tok, const std::vector<ChoiceItem>& items,
                                    const std::string& delimiter = " ", const ScoringOptions& opt = {});

// The accuracy of lm-eval's multiple_choice output type, from the scores of items[i]'s endings in order
// (scores.size() == total number of endings).
Result<ChoiceAccuracy> ChoiceAccuracyFromScores(const std::vector<ChoiceItem>& items,
                                                const std::vector<ContinuationScore>& scores);

}  // namespace subq
