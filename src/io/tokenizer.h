// Tokenizers: llama2.c tokenizer.bin, SentencePiece .model (through the SentencePiece library),
// HF tokenizer.json (BPE: byte-level as GPT-2/GPT-NeoX/Llama-3, and SentencePiece-style with byte
// fallback; normalizers, any Split regex, added tokens), tiktoken BPE files (Llama-3's tokenizer.model),
// and the vocabulary embedded in GGUF files.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/checkpoint.h"
#include "util/status.h"

namespace subq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`; with add_bos the BOS id is prepended.
  virtual std::vector<int> Encode(const std::string& text, bool add_bos) const = 0;
  // Text of a whole id sequence, as the reference library decodes it.
  virtual std::string Decode(const std::vector<int>& ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual std::string name() const = 0;  // e.g. "llama2c tok512.bin"
};

// Streams generated text: feed ids one at a time, get the new text they complete (handles pieces that
// only decode together, such as multi-byte UTF-8 split across byte tokens). Only a short window is
// decoded per token: the few tokens before the pending ones (so the decoder sees the same leading
// context, e.g. no dropped dummy-prefix space) and the pending ones, so each Next is O(1) amortised.
class DecodeStream {
 public:
  DecodeStream(const Tokenizer& tok, std::vector<int> prompt_ids);
  std::string Next(int id);

  // The window never grows past this many tokens: past it, pending bytes are emitted as decoded
  // (only a run of tokens that never forms valid UTF-8 gets there).
  static constexpr size_t kMaxWindow = 64;

 private:
  // Once everything decoded is emitted, keeps only the shortest suffix of the window that decodes on
  // its own to the end of `text` (stable and non-empty) as context for the next tokens.
  void ShrinkWindow(const std::string& text);

  const Tokenizer& tok_;
  std::vector<int> window_;  // context tokens, then the tokens whose text is still pending
  size_t emitted_ = 0;       // bytes of Decode(window_) already returned (or part of the prompt)
};

// Offset of the first byte of `text` that is not valid UTF-8 or is a NUL (binary data), or npos.
size_t FirstNonTextByte(std::string_view text);

// Loads a tokenizer from a file (.bin llama2.c, .model SentencePiece or tiktoken, .tiktoken,
// tokenizer.json) or a folder (tokenizer.json preferred, else tokenizer.model).
Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);
// Builds the tokenizer of a checkpoint: the GGUF embedded vocab, the HF folder's tokenizer files, or
// for llama2.c a tokenizer.bin / tok{vocab}.bin next to the model.
Result<std::unique_ptr<Tokenizer>> TokenizerForCheckpoint(const Checkpoint& ckpt);

// Fails, naming the tokenizer file, unless the tokenizer has exactly model_vocab entries (with
// allow_padding, a tokenizer smaller than the model's padded embedding table is accepted too).
Status CheckVocabMatches(const Tokenizer& tok, int model_vocab, const std::string& tok_path,
                         bool allow_padding = false);

}  // namespace subq
