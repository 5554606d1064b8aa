// The normalizers of HF tokenizer.json files (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend,
// in a Sequence), and the Unicode classes the tokenizers need, through utf8proc.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer_regex.h"

namespace subq::tok {

struct NormalizerStep {
  enum Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kStrip, kReplace, kPrepend } kind;
  std::string text;                      // Prepend: the prefix; Replace: the replacement
  std::shared_ptr<const Regex> pattern;  // Replace
  bool left = false, right = false;      // Strip
};

// Runs the steps in order over valid UTF-8 `s`.
std::string Normalize(std::string s, const std::vector<NormalizerStep>& steps);

// Unicode White_Space (Rust's char::is_whitespace, regex \s): Zs, Zl, Zp, U+0009..U+000D, U+0085.
bool IsWhitespace(uint32_t cp);
// A regex \w character (Alphabetic, marks, decimal digits, connector punctuation, joiners), as the
// single_word rule of added tokens tests it.
bool IsWordChar(uint32_t cp);

}  // namespace subq::tok
