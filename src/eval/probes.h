// Synthetic probes (issue 10): deterministic text generators for key-value retrieval, multi-query
// associative recall, parity and modular-sum state tracking. An example is a text made of pieces, some
// of which are answers: the scorer (eval/probe_score.h) feeds the text to a model and checks that its
// greedy prediction of every answer piece is exact; `subq data probe` writes the same examples as JSONL
// for training mixtures.
//
// Formats (`pairs`, `queries`, `length`, `modulus` are ProbeSpec fields):
//   kv-retrieval  the goombalab/mohawk KVRetrieval generator (dataloaders/DataGenerators/KVRetrieval.py):
//                 "Memorize the following dictionary:\n" + `pairs` lines "word:num" (distinct random
//                 words; distinct values drawn from 0..99) + "\nThe value of the key 'X' is" + answer " N".
//                 mohawk draws keys with wonderwords' RandomWord; subq draws them from its own fixed list
//                 of common words (probe_words.cc) so that examples are the same on every machine.
//   mqar          the same dictionary, then "\nRecall:" and `queries` distinct keys of it in random order,
//                 one per line, each "word:" + answer "num" (every query is scored, as in Zoology's MQAR).
//   parity        "Sum mod 2:" + `length` random bits " b1 b2 ..." + " =" + answer " r" (r = sum mod 2).
//   modular       the same with digits 0..modulus-1 and "Sum mod M:" (state tracking over Z_M).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace subq {

struct ProbeSpec {
  std::string name = "kv-retrieval";  // kv-retrieval | mqar | parity | modular
  int pairs = 20;    // kv-retrieval, mqar: key-value pairs in the dictionary (mohawk's default is 20)
  int queries = 8;   // mqar: keys asked, distinct, at most `pairs`
  int length = 16;   // parity, modular: terms summed
  int modulus = 5;   // modular (parity always uses 2)
};

// The probe names ProbeSpec::name accepts.
const std::vector<std::string>& ProbeNames();
// An error naming the bad field unless `spec` describes a probe that can be generated.
Status ValidateProbeSpec(const ProbeSpec& spec);
// The fields that matter for spec.name, e.g. {"name": "mqar", "pairs": 20, "queries": 8}.
nlohmann::json ProbeSpecJson(const ProbeSpec& spec);

struct ProbePiece {
  std::string text;
  bool answer = false;  // scored: the model must predict this piece exactly
};

struct ProbeExample {
  std::vector<ProbePiece> pieces;
  std::string Text() const;                      // the pieces concatenated
  std::vector<std::string> Answers() const;      // the answer pieces, in order
};

// Example `index` of the probe with this seed: a pure function of (spec, seed, index), so example i is
// the same whatever the number of examples asked for, on every platform (own RNG, no std:: distributions).
ProbeExample GenerateProbeExample(const ProbeSpec& spec, uint64_t seed, int64_t index);
// Examples 0..n-1 (after ValidateProbeSpec).
Result<std::vector<ProbeExample>> GenerateProbe(const ProbeSpec& spec, int64_t n, uint64_t seed);

// One JSONL record: {"probe": name, "index": i, "text": ..., "answers": [...], "answer_spans": [[begin,
// end], ...]} with byte offsets of the answers in "text" (`subq data prepare` reads the "text" field).
nlohmann::json ProbeExampleJson(const ProbeSpec& spec, const ProbeExample& ex, int64_t index);
// The inverse of ProbeExampleJson: the record's text cut into pieces at its answer spans (which must be
// increasing, non-overlapping and inside the text). A record without "answer_spans" is one context piece.
Result<ProbeExample> ProbeExampleFromJson(const nlohmann::json& record);
// Writes examples 0..n-1 as JSONL to `path`.
Status WriteProbeJsonl(const ProbeSpec& spec, int64_t n, uint64_t seed, const std::string& path);

// The fixed word list keys are drawn from (probe_words.cc): distinct lowercase English words.
const std::vector<std::string>& ProbeWords();

// A small deterministic generator (splitmix64): the same numbers on every platform and standard library.
class ProbeRng {
 public:
  explicit ProbeRng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, n) (n > 0), without modulo bias.
  uint64_t Below(uint64_t n);
  // k distinct values of [0, n), in random order (k <= n).
  std::vector<int> Sample(int n, int k);
  // A random permutation of `v`.
  template <typename T>
  void Shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[Below(i)]);
  }

 private:
  uint64_t state_;
};

}  // namespace subq
