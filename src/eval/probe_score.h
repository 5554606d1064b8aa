// Scoring probes (eval/probes.h) on a model: exact match of the greedy answer tokens, batched through
// the engine's ragged Model::Forward.
//
// An answer counts as right when the model's greedy decode after the text before it reproduces its
// tokens exactly. That decode is computed teacher-forced, in one pass over the whole example: the argmax
// at every answer position is compared with the answer token (greedy decode emits the answer iff every
// argmax given the correct previous tokens is the answer token). The same pass gives the answer tokens'
// loss, which still moves when accuracy is 0 (the ranking of `subq heads` uses it as the tie-breaker).
// Logits are kept only for the positions that predict answer tokens: each example is fed as alternating
// runs (context with last-row logits discarded, then the answer positions with all logits).
#pragma once
#include <cstdint>
#include <vector>

#include "eval/probes.h"
#include "io/tokenizer.h"
#include "model/model.h"

namespace subq {

// An example as token ids, with each answer as a half-open token range [begin, end).
struct TokenizedProbe {
  std::vector<int> tokens;
  std::vector<std::pair<int, int>> answers;
};

// Encodes the example (with BOS) and locates each answer's tokens: the tokens of the text up to an
// answer's end must extend those of the text before it (and the whole text's tokens must extend both),
// otherwise the tokenizer merges across the answer boundary and the probe cannot be scored: an error.
Result<TokenizedProbe> TokenizeProbe(const ProbeExample& ex, const Tokenizer& tok);
Result<std::vector<TokenizedProbe>> TokenizeProbes(const std::vector<ProbeExample>& examples, const Tokenizer& tok);

struct Interval {
  double low = 0, high = 0;
};
// Wilson score interval of k successes in n trials (z = 1.96: 95%); [0, 1] for n == 0.
Interval WilsonInterval(int64_t k, int64_t n, double z = 1.959963984540054);

struct ProbeResult {
  int64_t examples = 0, examples_correct = 0;  // an example is correct when all its answers are
  int64_t answers = 0, answers_correct = 0;    // accuracy counts answers (one per example but for mqar)
  int64_t answer_tokens = 0;
  double answer_nll = 0;    // mean negative log-likelihood of the answer tokens (nats/token)
  int64_t tokens_fed = 0;   // tokens run through the model
  int64_t attention_tokens = -1;  // with attention_before_answer: of tokens_fed, those in attention mode
  std::vector<uint8_t> correct;  // per answer, in example order
  std::vector<int> predicted;    // greedy token at every answer token position, in order
  double accuracy() const { return answers > 0 ? static_cast<double>(answers_correct) / answers : 0.0; }
  Interval ci95() const { return WilsonInterval(answers_correct, answers); }
};

// Tokens a Workspace needs to score `probes` with about `batch_tokens` rows per Forward call: every
// example fits in one call (the longest one decides when it exceeds `batch_tokens`).
int ProbeWorkspaceTokens(const std::vector<TokenizedProbe>& probes, int batch_tokens = 2048);

// Scores every example. Examples are grouped so that a group's tokens fit ws.max_tokens(); each call of
// Model::Forward carries the next run of every example of the group. Any head mask set on `ws`
// (Workspace::SetZeroedHeads) applies. Errors: an example longer than the model's context limit or
// than ws.max_tokens(), an answer at token 0, a failing Forward.
//
// attention_before_answer >= 0 (Oryx models): each example runs in recurrent mode except the
// `attention_before_answer` tokens before each answer and the answer's own positions, which run in
// attention mode (mixers/oryx.h keeps both states current, so the mode may switch anywhere). The result
// then counts the positions fed in attention mode (attention_tokens) against tokens_fed.
Result<ProbeResult> ScoreProbe(const Model& model, const std::vector<TokenizedProbe>& probes, Workspace& ws,
                               int attention_before_answer = -1);

// {"accuracy", "ci95": [low, high], "answers", "answers_correct", "examples", "examples_correct",
//  "answer_tokens", "answer_nll", "tokens"}.
nlohmann::json ProbeResultJson(const ProbeResult& r);

}  // namespace subq
