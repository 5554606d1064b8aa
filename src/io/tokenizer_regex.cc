// Oniguruma behind tok::Regex, and the Split behaviours of HF tokenizers on top of its matches.
#include "io/tokenizer_regex.h"

#include <algorithm>
#include <mutex>

#include <oniguruma.h>

namespace subq::tok {
namespace {

void InitOnigurumaOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

std::string OnigMessage(int code, OnigErrorInfo* info) {
  OnigUChar buf[ONIG_MAX_ERROR_MESSAGE_LEN];
  const int n = info ? onig_error_code_to_str(buf, code, info) : onig_error_code_to_str(buf, code);
  return std::string(reinterpret_cast<const char*>(buf), n > 0 ? n : 0);
}

const OnigUChar* U(std::string_view s, size_t off) { return reinterpret_cast<const OnigUChar*>(s.data()) + off; }

// Bytes of the UTF-8 character starting at s[pos] (1 past the end or for a stray byte).
size_t CharLen(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 1;
  const auto b = static_cast<uint8_t>(s[pos]);
  return b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
}

}  // namespace

Result<std::shared_ptr<const Regex>> Regex::Compile(std::string_view pattern) {
  InitOnigurumaOnce();
  OnigRegex re = nullptr;
  OnigErrorInfo info;
  const int r = onig_new(&re, U(pattern, 0), U(pattern, pattern.size()), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                         ONIG_SYNTAX_DEFAULT, &info);
  if (r != ONIG_NORMAL) return Errorf("regex '{}' does not compile: {}", pattern, OnigMessage(r, &info));
  return std::shared_ptr<const Regex>(new Regex(re));
}

Regex::~Regex() { onig_free(static_cast<OnigRegex>(re_)); }

std::vector<std::pair<size_t, size_t>> Regex::FindAll(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  OnigRegion* region = onig_region_new();
  size_t last_end = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (last_end <= text.size()) {
    onig_region_clear(region);
    const int r = onig_search(static_cast<OnigRegex>(re_), U(text, 0), U(text, text.size()), U(text, last_end),
                              U(text, text.size()), region, ONIG_OPTION_NONE);
    // ONIG_MISMATCH ends the search; any other negative code is an engine limit (retry limit on a
    // pathological pattern), where tokenizers would panic: the rest of the text stays unmatched.
    if (r < 0) break;
    const auto s = static_cast<size_t>(region->beg[0]), e = static_cast<size_t>(region->end[0]);
    if (s == e && have_last && last_match_end == e) {
      last_end += CharLen(text, last_end);
      continue;
    }
    last_end = e;
    have_last = true;
    last_match_end = e;
    out.emplace_back(s, e);
  }
  onig_region_free(region, 1);
  return out;
}

bool Regex::FullMatch(std::string_view text) const {
  OnigRegion* region = onig_region_new();
  const int r = onig_match(static_cast<OnigRegex>(re_), U(text, 0), U(text, text.size()), U(text, 0), region,
                           ONIG_OPTION_NONE);
  onig_region_free(region, 1);
  return r >= 0 && static_cast<size_t>(r) == text.size();
}

std::string RegexEscape(std::string_view s) {
  std::string out;  // the characters Rust's regex::escape escapes (tokenizers uses it for string patterns)
  for (char c : s) {
    if (std::string_view("\\.+*?()|[]{}^$#&-~").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::vector<std::string_view> SplitByRegex(std::string_view text, const Regex& re, SplitBehavior behavior,
                                           bool invert) {
  // (begin, end, is_match) over the whole text, as tokenizers' Pattern::find_matches.
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> spans;
  size_t prev = 0;
  for (auto [s, e] : re.FindAll(text)) {
    if (prev != s) spans.push_back({prev, s, false});
    spans.push_back({s, e, true});
    prev = e;
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), false});
  if (invert)
    for (Span& sp : spans) sp.match = !sp.match;

  std::vector<Span> pieces;  // match = "remove this piece"
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      pieces = spans;
      break;
    case SplitBehavior::kIsolated:
      for (Span sp : spans) pieces.push_back({sp.b, sp.e, false});
      break;
    case SplitBehavior::kContiguous:
      for (const Span& sp : spans) {
        if (sp.match == previous_match && !pieces.empty()) pieces.back().e = sp.e;
        else pieces.push_back({sp.b, sp.e, false});
        previous_match = sp.match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& sp : spans) {
        if (sp.match && !previous_match && !pieces.empty()) pieces.back().e = sp.e;
        else pieces.push_back({sp.b, sp.e, false});
        previous_match = sp.match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& sp = spans[k];
        if (sp.match && !previous_match && !pieces.empty()) pieces.back().b = sp.b;
        else pieces.push_back({sp.b, sp.e, false});
        previous_match = sp.match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  std::vector<std::string_view> out;
  for (const Span& p : pieces)
    if (!p.match && p.e > p.b) out.push_back(text.substr(p.b, p.e - p.b));
  return out;
}

}  // namespace subq::tok

namespace subq::tok {
std::string ReplaceByRegex(std::string_view text, const Regex& re, std::string_view content) {
  std::string out;
  size_t prev = 0;
  for (auto [s, e] : re.FindAll(text)) {
    out.append(text.substr(prev, s - prev));
    out.append(content);
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}
}  // namespace subq::tok
