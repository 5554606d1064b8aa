// Normalizers through utf8proc (Unicode normalization forms and case mapping) and Oniguruma (Replace).
// Unicode versions: the Debian utf8proc and Oniguruma (15.0 / 14.0); tokenizers' Rust crates may know
// characters added later, which only matters for text using them.
#include "io/tokenizer_normalize.h"

#include <cstdlib>

#include <utf8proc.h>

#include "io/tokenizer_impl.h"

namespace subq::tok {
namespace {

std::string UnicodeForm(const std::string& s, int options) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &out,
                                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | options));
  if (n < 0) return s;  // only for invalid UTF-8, which Encode never passes (it is made lossy first)
  std::string r(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

// Rust's char::to_lowercase per character: the simple mapping, except U+0130 (the one character whose
// unconditional lowercase is two characters, "i" + combining dot above).
std::string Lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t p = 0; p < s.size();) {
    const uint32_t cp = NextCodepoint(s, &p);
    if (cp == 0x130) {
      out += "i\xCC\x87";
      continue;
    }
    AppendUtf8(static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))), &out);
  }
  return out;
}

std::string Strip(const std::string& s, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left)
    for (size_t p = 0; p < s.size() && IsWhitespace(NextCodepoint(s, &p));) b = p;
  if (right) {
    while (e > b) {
      size_t q = e - 1;
      while (q > b && (static_cast<uint8_t>(s[q]) & 0xC0) == 0x80) --q;
      size_t r = q;
      if (!IsWhitespace(NextCodepoint(s, &r))) break;
      e = q;
    }
  }
  return s.substr(b, e - b);
}

}  // namespace

std::string Normalize(std::string s, const std::vector<NormalizerStep>& steps) {
  for (const NormalizerStep& n : steps) {
    switch (n.kind) {
      case NormalizerStep::kNfc: s = UnicodeForm(s, UTF8PROC_COMPOSE); break;
      case NormalizerStep::kNfd: s = UnicodeForm(s, UTF8PROC_DECOMPOSE); break;
      case NormalizerStep::kNfkc: s = UnicodeForm(s, UTF8PROC_COMPOSE | UTF8PROC_COMPAT); break;
      case NormalizerStep::kNfkd: s = UnicodeForm(s, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT); break;
      case NormalizerStep::kLowercase: s = Lowercase(s); break;
      case NormalizerStep::kStrip: s = Strip(s, n.left, n.right); break;
      case NormalizerStep::kReplace: s = ReplaceByRegex(s, *n.pattern, n.text); break;
      case NormalizerStep::kPrepend:
        if (!s.empty()) s.insert(0, n.text);
        break;
    }
  }
  return s;
}

bool IsWhitespace(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return true;
  const utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

bool IsWordChar(uint32_t cp) {
  if (cp == 0x200C || cp == 0x200D) return true;  // Join_Control: in Rust's \w, not in Oniguruma's
  static const std::shared_ptr<const Regex> word = Regex::Compile("\\w").value();
  std::string ch;
  AppendUtf8(cp, &ch);
  return word->FullMatch(ch);
}

}  // namespace subq::tok
