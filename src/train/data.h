// Distillation data: text corpora tokenised with the teacher's tokenizer (documents split on a separator,
// each prefixed with BOS) or a folder of tokenized shards (`subq data prepare`), a held-out split for
// perplexity, and a deterministic sequence sampler whose whole state is one counter (saved in
// checkpoints so a resumed run sees the same batches). No torch here.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/token_shards.h"
#include "io/tokenizer.h"
#include "train/recipe.h"

namespace subq::train {

struct Corpus {
  std::vector<int> train;                // packed token stream (text files; empty with shards)
  std::unique_ptr<ShardReader> shards;   // the training split of a shard folder (else null)
  std::vector<int> held_out;             // packed token stream of the held-out documents
  std::string held_out_text;             // their text, documents separated as `subq eval --text` reads them
  int64_t train_docs = 0;
};

// Splits `text` on `separator` ("" = one document), trimming whitespace and dropping empty documents.
std::vector<std::string> SplitDocuments(const std::string& text, const std::string& separator);
// Reads and tokenises the recipe's files (the last held_out_fraction of each file's documents is held
// out), or opens its shard folder (checking sizes, checksums and that the shards were written with this
// tokenizer; the held-out split is read up to eval_tokens). Errors: unreadable/empty files, corrupt
// shards, too few tokens for one training sequence or one held-out window.
Result<Corpus> BuildCorpus(const DataRecipe& data, const Tokenizer& tok, int seq_len);

// Non-overlapping windows of seq_len tokens of a stream, visited in a fresh pseudo-random order every
// epoch. Sequence k of the run is a pure function of (stream, seq_len, seed, k): position() is the number
// of sequences handed out so far, SetPosition() restores it exactly, and data-parallel ranks read
// disjoint slices of the same global order with Get().
class SequenceSampler {
 public:
  SequenceSampler(const TokenSource* stream, int seq_len, uint64_t seed);
  int64_t num_sequences() const { return n_seq_; }
  Status Get(uint64_t k, int* out);  // writes the seq_len ids of global sequence k
  Status Next(int* out) { return Get(pos_++, out); }
  uint64_t position() const { return pos_; }
  void SetPosition(uint64_t p) { pos_ = p; }

 private:
  const TokenSource* stream_;
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
