// The pre-tokenization regexes of GPT-2, Llama-3 (= tiktoken cl100k) and Qwen2, written as scanners
// over codepoints. std::regex has no \p{L}; each scanner tries the alternatives of its regex in order at
// the current position and returns the first that matches, with the backtracking the regex engine
// would do for the two look-ahead / trailing-newline alternatives. Classes (tokenizer_unicode.cc):
// \p{L} letters, \p{N} numbers, \s Unicode White_Space, "other" = none of these.
#include "io/tokenizer_impl.h"

namespace subq::tok {
namespace {

// The regex strings as they appear in tokenizer.json files.
constexpr const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class Scanner {
 public:
  explicit Scanner(std::string_view text) {
    for (size_t p = 0; p < text.size();) {
      offs_.push_back(p);
      cps_.push_back(NextCodepoint(text, &p));
    }
    offs_.push_back(text.size());
  }
  size_t size() const { return cps_.size(); }
  size_t offset(size_t i) const { return offs_[i]; }

  bool L(size_t i) const { return i < cps_.size() && IsLetter(cps_[i]); }
  bool N(size_t i) const { return i < cps_.size() && IsNumber(cps_[i]); }
  bool S(size_t i) const { return i < cps_.size() && IsWhitespace(cps_[i]); }
  bool O(size_t i) const { return i < cps_.size() && !IsWhitespace(cps_[i]) && !IsLetter(cps_[i]) && !IsNumber(cps_[i]); }
  bool Newline(size_t i) const { return i < cps_.size() && (cps_[i] == '\r' || cps_[i] == '\n'); }
  uint32_t cp(size_t i) const { return i < cps_.size() ? cps_[i] : 0; }

  // 's|'t|'re|'ve|'m|'ll|'d at i: end of the match, or 0.
  size_t Contraction(size_t i, bool ignore_case) const {
    if (cp(i) != '\'') return 0;
    auto ch = [&](size_t k) {
      uint32_t c = cp(k);
      return ignore_case && c >= 'A' && c <= 'Z' ? c + 32 : c;
    };
    for (const char* suf : {"s", "t", "re", "ve", "m", "ll", "d"}) {
      size_t k = 0;
      while (suf[k] && ch(i + 1 + k) == static_cast<uint32_t>(suf[k])) ++k;
      if (!suf[k]) return i + 1 + k;
    }
    return 0;
  }
  size_t RunOf(size_t j, bool (Scanner::*pred)(size_t) const) const {
    while ((this->*pred)(j)) ++j;
    return j;
  }
  // \s*[\r\n]+ | \s+(?!\S) | \s+ at a whitespace i (with_newline_rule: the first alternative is tried).
  size_t Whitespace(size_t i, bool with_newline_rule) const {
    const size_t j = RunOf(i, &Scanner::S);
    if (with_newline_rule) {
      size_t last = j;
      for (size_t k = i; k < j; ++k)
        if (Newline(k)) last = k;
      if (last != j) return last + 1;
    }
    if (j == size() || j - i < 2) return j;  // the whole run (at the end, or a single space)
    return j - 1;                            // leave the last space to prefix the next word
  }

  size_t MatchGpt2(size_t i) const {
    if (size_t e = Contraction(i, false)) return e;
    const size_t k = cp(i) == ' ' ? i + 1 : i;  // the optional leading space
    if (L(k)) return RunOf(k, &Scanner::L);
    if (N(k)) return RunOf(k, &Scanner::N);
    if (O(k)) return RunOf(k, &Scanner::O);
    return Whitespace(i, false);
  }

  size_t MatchLlama3(size_t i, size_t max_digits) const {
    if (size_t e = Contraction(i, true)) return e;
    if (!L(i) && !N(i) && !Newline(i) && L(i + 1)) return RunOf(i + 1, &Scanner::L);
    if (L(i)) return RunOf(i, &Scanner::L);
    if (N(i)) {
      size_t j = i;
      while (N(j) && j - i < max_digits) ++j;
      return j;
    }
    const size_t k = cp(i) == ' ' && O(i + 1) ? i + 1 : i;
    if (O(k)) return RunOf(RunOf(k, &Scanner::O), &Scanner::Newline);
    return Whitespace(i, true);
  }

 private:
  std::vector<uint32_t> cps_;
  std::vector<size_t> offs_;  // byte offset of each codepoint, plus the end
};

}  // namespace

bool RecognizeSplitPattern(const std::string& regex, SplitPattern* out) {
  if (regex == kGpt2Regex) *out = SplitPattern::kGpt2;
  else if (regex == kLlama3Regex) *out = SplitPattern::kLlama3;
  else if (regex == kQwen2Regex) *out = SplitPattern::kQwen2;
  else return false;
  return true;
}

std::vector<std::string_view> SplitByPattern(std::string_view text, SplitPattern pattern) {
  const Scanner sc(text);
  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < sc.size();) {
    const size_t j = pattern == SplitPattern::kGpt2     ? sc.MatchGpt2(i)
                     : pattern == SplitPattern::kLlama3 ? sc.MatchLlama3(i, 3)
                                                        : sc.MatchLlama3(i, 1);
    pieces.push_back(text.substr(sc.offset(i), sc.offset(j) - sc.offset(i)));
    i = j;
  }
  return pieces;
}

}  // namespace subq::tok
