// Private pieces shared by the tokenizer implementations (tokenizer_*.cc) and their tests: UTF-8
// helpers and the per-format factories.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer.h"

namespace subq::tok {

// ---- UTF-8 ----
// Length of the UTF-8 sequence a lead byte announces (1 for ASCII and for stray bytes).
int Utf8SeqLen(uint8_t lead);
// Decodes the codepoint at s[*pos] and advances *pos; an invalid byte decodes as U+FFFD and advances 1.
uint32_t NextCodepoint(std::string_view s, size_t* pos);
void AppendUtf8(uint32_t cp, std::string* out);
// Bytes at the end of `s` that form an incomplete (but so far valid) UTF-8 sequence: 0..3.
size_t IncompleteUtf8Tail(std::string_view s);
// Replaces invalid UTF-8 by U+FFFD, one per maximal invalid subpart (Rust's String::from_utf8_lossy).
std::string Utf8Lossy(std::string_view s);
bool IsValidUtf8(std::string_view s);

// "<0xXX>" (hex digits in either case) -> XX, or -1.
int ParseBytePiece(std::string_view piece);
std::string ReplaceAll(std::string s, std::string_view from, std::string_view to);
// Removes up to `start` leading and `stop` trailing copies of `ch` (tokenizers' Strip decoder).
std::string StripChars(const std::string& t, const std::string& ch, int start, int stop);

// ---- SentencePiece-style vocabulary with score-ordered merges (llama2.c, GGUF "llama") ----
struct LlamaVocabOptions {
  bool add_dummy_prefix = true;           // llama2.c and llama.cpp prepend " " to non-empty text
  bool remove_extra_whitespaces = false;  // SentencePiece's default normalisation; llama2.c does not do it
};
// Loads a llama2.c tokenizer.bin. vocab_size < 0: read tokens until the end of the file; otherwise the
// file must hold exactly that many tokens.
Result<std::unique_ptr<Tokenizer>> LoadLlama2cTokenizer(const std::string& path, int vocab_size = -1,
                                                        LlamaVocabOptions opt = {});
// Builds the encoder from a GGUF-embedded "llama" vocabulary (U+2581 for spaces, "<0xXX>" byte tokens).
Result<std::unique_ptr<Tokenizer>> MakeEmbeddedVocabTokenizer(const EmbeddedVocab& vocab, const std::string& name,
                                                              LlamaVocabOptions opt = {});

Result<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path);
Result<std::unique_ptr<Tokenizer>> LoadHfJsonTokenizer(const std::string& path);
// A tiktoken BPE file ("<base64 token> <rank>" lines, as Llama-3's tokenizer.model) with the Llama-3
// split pattern and special tokens (tokenizer_tiktoken.cc).
Result<std::unique_ptr<Tokenizer>> LoadTiktokenTokenizer(const std::string& path);
// Whether the file starts like a tiktoken BPE file (a base64 token, a space, a rank).
bool LooksLikeTiktoken(const std::string& path);

}  // namespace subq::tok
