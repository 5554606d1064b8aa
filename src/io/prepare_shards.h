// `subq data prepare`: plain-text (documents split on a separator) and JSONL (one {"text": ...} per
// line) corpora -> tokenized shards (io/token_shards.h). Every held_out_every-th document goes to the
// held-out split (a deterministic split by documents, spread over the whole corpus); its text is also
// written to held_out.txt so `subq eval --text` scores the same documents. Files are streamed, never
// read whole. No torch here.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/token_shards.h"
#include "io/tokenizer.h"

namespace subq {

struct PrepareOptions {
  std::vector<std::string> inputs;          // .jsonl / .ndjson are JSONL, anything else plain text
  std::string out_dir;
  std::string separator = "<|endoftext|>";  // plain text: document separator ("" = one document per file)
  std::string text_key = "text";            // JSONL field
  int held_out_every = 20;                  // 1 in N documents is held out (0 = none)
  bool add_bos = true, add_eos = false;     // framing of each document
  int64_t shard_tokens = int64_t{1} << 26;  // tokens per shard file (64M)
  int token_bytes = 0;                      // 0 = 2 when the vocab fits uint16, else 4
};

struct PrepareStats {
  int64_t bytes_read = 0, bytes_total = 0;
  int64_t docs = 0, held_out_docs = 0, tokens = 0, held_out_tokens = 0;
  double seconds = 0;
};

// Writes the shards and index.json to opts.out_dir (created; must not already hold an index.json).
// `progress` is called now and then (and once at the end) with the running totals.
Result<PrepareStats> PrepareShards(const PrepareOptions& opts, const Tokenizer& tok,
                                   const std::function<void(const PrepareStats&, bool done)>& progress);

}  // namespace subq
