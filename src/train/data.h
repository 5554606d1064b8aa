// Distillation data: text corpora tokenised with the teacher's tokenizer (documents split on a separator,
// each prefixed with BOS), a held-out tail for perplexity, and a deterministic sequence sampler whose
// whole state is one counter (saved in checkpoints so a resumed run sees the same batches).
// No torch here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/tokenizer.h"
#include "train/recipe.h"

namespace subq::train {

struct Corpus {
  std::vector<int> train;     // packed token stream
  std::vector<int> held_out;  // packed token stream of the held-out documents
  std::vector<std::string> held_out_docs;
  int64_t train_docs = 0;
};

// Splits `text` on `separator` ("" = one document), trimming whitespace and dropping empty documents.
std::vector<std::string> SplitDocuments(const std::string& text, const std::string& separator);
// Reads and tokenises the recipe's files; the last held_out_fraction of each file's documents is held out.
// Errors: unreadable/empty files, too few tokens for one training sequence or one held-out window.
Result<Corpus> BuildCorpus(const DataRecipe& data, const Tokenizer& tok, int seq_len);

// Non-overlapping windows of seq_len tokens of a stream, visited in a fresh pseudo-random order every
// epoch. position() is the number of sequences handed out so far; SetPosition() restores it exactly.
class SequenceSampler {
 public:
  SequenceSampler(const std::vector<int>* stream, int seq_len, uint64_t seed);
  int64_t num_sequences() const { return n_seq_; }
  void Next(int* out);  // writes seq_len ids
  uint64_t position() const { return pos_; }
  void SetPosition(uint64_t p) { pos_ = p; }

 private:
  const std::vector<int>* stream_;
  int seq_len_;
  uint64_t seed_;
  int64_t n_seq_;
  uint64_t pos_ = 0;
  int64_t perm_epoch_ = -1;
  std::vector<int64_t> perm_;
};

// splitmix64: the trainer's only source of randomness outside torch (portable, reproducible).
uint64_t SplitMix64(uint64_t* state);

}  // namespace subq::train
