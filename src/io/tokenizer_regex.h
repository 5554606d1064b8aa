// Regular expressions for tokenizers, run by Oniguruma: the engine (and the settings: UTF-8, Oniguruma
// syntax, no options) HF tokenizers compiles every Split / Replace / ByteLevel pattern with, so any
// pattern in a tokenizer.json means here what it means there (\p{L}, (?i:...), look-ahead, ...).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/status.h"

namespace subq::tok {

class Regex {
 public:
  // Compiles `pattern`; a pattern Oniguruma rejects is an error carrying its message.
  static Result<std::shared_ptr<const Regex>> Compile(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The non-overlapping matches in `text` (valid UTF-8), left to right, as [begin, end) byte offsets.
  // An empty match right where the previous match ended is skipped (one character further), as the
  // onig crate's find_iter does. Safe to call from several threads at once.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;
  // Whether the whole of `text` matches (anchored at both ends).
  bool FullMatch(std::string_view text) const;

 private:
  explicit Regex(void* re) : re_(re) {}
  void* re_;  // OnigRegex (regex_t*), kept out of this header
};

// `s` as a pattern that matches it literally (tokenizers turns {"String": s} patterns into such a regex).
std::string RegexEscape(std::string_view s);

// How a Split pre-tokenizer treats the matches (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Splits `text` into pieces at the matches of `re` as tokenizers' NormalizedString::split does: the
// matches and the text between them (matches flipped with `invert`), combined by `behavior`; empty
// pieces are dropped.
std::vector<std::string_view> SplitByRegex(std::string_view text, const Regex& re, SplitBehavior behavior,
                                           bool invert = false);

}  // namespace subq::tok

namespace subq::tok {
// `text` with every match of `re` replaced by `content` (empty matches too), as tokenizers' Replace
// normalizer and decoder do.
std::string ReplaceByRegex(std::string_view text, const Regex& re, std::string_view content);
}  // namespace subq::tok
