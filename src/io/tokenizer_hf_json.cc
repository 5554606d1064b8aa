// HF tokenizer.json with model.type "BPE", reproducing the `tokenizers` library:
//   added tokens are split off first (leftmost-longest, lstrip/rstrip/single_word honoured; the raw-text
//   ones before the normalizer, the `normalized` ones after it), each remaining segment is normalized
//   (tokenizer_normalize.h), pre-tokenized (Split with any regex and behaviour, run by Oniguruma as in
//   tokenizers; ByteLevel; Metaspace) and each word is BPE-merged by merge rank (lowest rank first,
//   leftmost on ties), with byte_fallback, unk/fuse_unk and ignore_merges.
//   Decode runs the decoder chain (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace) over the
//   tokens, skipping special added tokens as tokenizers' decode(skip_special_tokens=True) does.
// Anything else (other models, normalizers, pre-tokenizers, decoders, regexes) is refused with an error
// naming the file and the component.
#include <queue>
#include <unordered_map>

#include "io/tokenizer_hf_json_impl.h"

namespace subq::tok {

// ---- byte-level alphabet (GPT-2 bytes_to_unicode) ----

ByteLevelAlphabet::ByteLevelAlphabet() {
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const uint32_t cp = printable ? b : 256 + extra++;
    AppendUtf8(cp, &char_of_byte_[b]);
    byte_of_char_[cp] = static_cast<uint8_t>(b);
  }
}

std::string ByteLevelAlphabet::Encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += char_of_byte_[static_cast<uint8_t>(c)];
  return out;
}

bool ByteLevelAlphabet::Decode(std::string_view token, std::string* out) const {
  std::string bytes;
  for (size_t p = 0; p < token.size();) {
    auto it = byte_of_char_.find(NextCodepoint(token, &p));
    if (it == byte_of_char_.end()) return false;
    bytes.push_back(static_cast<char>(it->second));
  }
  *out += bytes;
  return true;
}

// ---- encoding ----

// tokenizers' AddedVocabulary::find_matches: leftmost-longest matches (an Aho-Corasick scan); a match
// that fails its single_word test is dropped, and the scan goes on after it.
std::vector<HfBpeTokenizer::Segment> HfBpeTokenizer::SplitAddedTokens(std::string_view text, bool at_start,
                                                                      bool normalized) const {
  std::vector<Segment> segs;
  const auto& by_first_byte = added_by_first_byte_[normalized ? 1 : 0];
  auto prev_char = [&](size_t pos) {  // the codepoint ending at pos (> 0)
    size_t p = pos - 1;
    while (p > 0 && (static_cast<uint8_t>(text[p]) & 0xC0) == 0x80) --p;
    return NextCodepoint(text, &p);
  };
  size_t seg_start = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* best = nullptr;
    auto cands = by_first_byte.empty() ? by_first_byte.end() : by_first_byte.find(static_cast<uint8_t>(text[i]));
    if (cands != by_first_byte.end()) {
      for (int k : cands->second) {
        const AddedToken& a = added_[k];
        if (text.compare(i, a.match.size(), a.match) != 0) continue;
        if (!best || a.match.size() > best->match.size()) best = &a;
      }
    }
    if (!best) {
      ++i;
      continue;
    }
    size_t start = i, end = i + best->match.size();
    if (best->single_word) {
      size_t e = end;
      if ((start > 0 && IsWordChar(prev_char(start))) || (e < text.size() && IsWordChar(NextCodepoint(text, &e)))) {
        i = end;
        continue;
      }
    }
    if (best->lstrip)
      while (start > seg_start && IsWhitespace(prev_char(start)))
        do --start; while ((static_cast<uint8_t>(text[start]) & 0xC0) == 0x80);
    if (best->rstrip)
      for (size_t q = end; q < text.size() && IsWhitespace(NextCodepoint(text, &q));) end = q;
    if (start > seg_start) segs.push_back({text.substr(seg_start, start - seg_start), -1, at_start && seg_start == 0});
    segs.push_back({{}, best->id, false});
    seg_start = i = end;
  }
  if (seg_start < text.size()) segs.push_back({text.substr(seg_start), -1, at_start && seg_start == 0});
  return segs;
}

std::vector<HfBpeTokenizer::Piece> HfBpeTokenizer::PreTokenize(std::vector<Piece> pieces) const {
  for (const PreTokenizerStep& st : pre_) {
    std::vector<Piece> next;
    auto add_split = [&](std::string_view text, bool at_start, const Regex& re, SplitBehavior behavior, bool invert,
                         bool byte_level) {
      bool first = at_start;
      for (std::string_view s : SplitByRegex(text, re, behavior, invert)) {
        next.push_back({byte_level ? bytes_.Encode(s) : std::string(s), first && s.data() == text.data()});
        first = false;
      }
    };
    for (Piece& pc : pieces) {
      if (st.kind == PreTokenizerStep::kSplit) {
        add_split(pc.text, pc.at_start, *st.regex, st.behavior, st.invert, false);
      } else if (st.kind == PreTokenizerStep::kByteLevel) {
        std::string t = std::move(pc.text);
        if (st.add_prefix_space && (t.empty() || t[0] != ' ')) t.insert(t.begin(), ' ');
        if (st.regex) add_split(t, pc.at_start, *st.regex, SplitBehavior::kIsolated, false, true);
        else next.push_back({bytes_.Encode(t), pc.at_start});
      } else {  // Metaspace
        std::string t = ReplaceAll(pc.text, " ", st.replacement);
        const bool prepend = st.prepend == PreTokenizerStep::kAlways || (st.prepend == PreTokenizerStep::kFirst && pc.at_start);
        if (prepend && t.compare(0, st.replacement.size(), st.replacement) != 0) t.insert(0, st.replacement);
        if (!st.split) {
          next.push_back({std::move(t), pc.at_start});
          continue;
        }
        bool first = pc.at_start;
        size_t begin = 0;
        for (size_t p = t.find(st.replacement, 1); p != std::string::npos; p = t.find(st.replacement, p + 1)) {
          next.push_back({t.substr(begin, p - begin), first});
          first = false;
          begin = p;
        }
        next.push_back({t.substr(begin), first});
      }
    }
    pieces.clear();
    for (Piece& p : next)  // tokenizers drops empty pieces after every step
      if (!p.text.empty()) pieces.push_back(std::move(p));
  }
  return pieces;
}

void HfBpeTokenizer::EncodeWord(const std::string& word, std::vector<int>* out) const {
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // Initial symbols, as tokenizers' merge_word: a char, its byte tokens, or <unk> (fused when asked).
  std::vector<int> syms;
  int pending_unk = -1;
  for (size_t p = 0; p < word.size();) {
    const size_t b = p;
    NextCodepoint(word, &p);
    const std::string ch = word.substr(b, p - b);
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      if (pending_unk >= 0) syms.push_back(pending_unk), pending_unk = -1;
      syms.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int> bytes;
      for (char c : ch) {
        auto it = vocab_.find(fmt::format("<0x{:02X}>", static_cast<uint8_t>(c)));
        if (it == vocab_.end()) break;
        bytes.push_back(it->second);
      }
      if (bytes.size() == ch.size()) {
        syms.insert(syms.end(), bytes.begin(), bytes.end());
        continue;
      }
    }
    if (unk_id_ < 0) continue;  // no unk token: the character is dropped, as tokenizers does
    if (pending_unk >= 0 && !fuse_unk_) syms.push_back(pending_unk);
    pending_unk = unk_id_;
  }
  if (pending_unk >= 0) syms.push_back(pending_unk);

  // Merge: lowest rank first, then leftmost; a queued merge is applied only if the pair now at its
  // position still maps to the same new token (tokenizers' Word::merge_all).
  const int n = static_cast<int>(syms.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  struct Cand {
    int rank, pos, new_id;
  };
  auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> q(worse);
  auto consider = [&](int l) {
    if (l < 0 || next[l] < 0) return;
    auto it = merges_.find(PairKey(syms[l], syms[next[l]]));
    if (it != merges_.end()) q.push({it->second.rank, l, it->second.new_id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!q.empty()) {
    const Cand c = q.top();
    q.pop();
    if (syms[c.pos] < 0 || next[c.pos] < 0) continue;
    auto it = merges_.find(PairKey(syms[c.pos], syms[next[c.pos]]));
    if (it == merges_.end() || it->second.new_id != c.new_id) continue;
    const int r = next[c.pos];
    syms[c.pos] = c.new_id;
    syms[r] = -1;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    consider(prev[c.pos]);
    consider(c.pos);
  }
  for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i]) out->push_back(syms[i]);
}

// One stretch of raw text between added tokens: normalized, then split at the normalized added tokens,
// then pre-tokenized and BPE-encoded word by word.
void HfBpeTokenizer::EncodeSegment(std::string_view text, bool at_start, std::vector<int>* out) const {
  const std::string normalized = Normalize(std::string(text), norm_);
  for (const Segment& seg : SplitAddedTokens(normalized, at_start, /*normalized=*/true)) {
    if (seg.added_id >= 0) {
      out->push_back(seg.added_id);
      continue;
    }
    for (const Piece& w : PreTokenize({{std::string(seg.text), seg.at_start}})) EncodeWord(w.text, out);
  }
}

// Text that is not valid UTF-8 is read as Python's bytes.decode("utf-8", errors="replace") (and Rust's
// from_utf8_lossy) read it, each maximal invalid subpart becoming U+FFFD: that is the str a caller of
// tokenizers would hold for those bytes.
std::vector<int> HfBpeTokenizer::Encode(const std::string& raw, bool add_bos) const {
  std::vector<int> out;
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  const std::string lossy = IsValidUtf8(raw) ? std::string() : Utf8Lossy(raw);
  const std::string_view text = lossy.empty() ? std::string_view(raw) : std::string_view(lossy);
  for (const Segment& seg : SplitAddedTokens(text, /*at_start=*/true, /*normalized=*/false)) {
    if (seg.added_id >= 0) out.push_back(seg.added_id);
    else EncodeSegment(seg.text, seg.at_start, &out);
  }
  return out;
}

// ---- decoding ----

std::string HfBpeTokenizer::Decode(const std::vector<int>& ids) const {
  std::vector<std::string> toks;
  for (int id : ids) {
    if (id < 0 || id >= static_cast<int>(id_to_token_.size()) || !has_token_[id]) continue;
    if (special_[id]) continue;
    toks.push_back(id_to_token_[id]);
  }
  if (dec_.empty()) {  // tokenizers joins tokens with spaces when there is no decoder
    std::string out;
    for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
    return out;
  }
  for (const DecoderStep& d : dec_) {
    switch (d.kind) {
      case DecoderStep::kByteLevel: {
        std::string bytes;
        for (const std::string& t : toks)
          if (!bytes_.Decode(t, &bytes)) bytes += t;
        toks = {Utf8Lossy(bytes)};
        break;
      }
      case DecoderStep::kReplace:
        for (std::string& t : toks) t = ReplaceByRegex(t, *d.regex, d.content);
        break;
      case DecoderStep::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        int npending = 0;
        auto flush = [&] {
          if (npending == 0) return;
          if (IsValidUtf8(pending)) out.push_back(pending);
          else for (int k = 0; k < npending; ++k) out.push_back("\xEF\xBF\xBD");
          pending.clear();
          npending = 0;
        };
        for (std::string& t : toks) {
          const int b = ParseBytePiece(t);
          if (b >= 0) {
            pending.push_back(static_cast<char>(b));
            ++npending;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        toks = std::move(out);
        break;
      }
      case DecoderStep::kFuse: {
        std::string all;
        for (const std::string& t : toks) all += t;
        toks = {all};
        break;
      }
      case DecoderStep::kStrip:
        for (std::string& t : toks) t = StripChars(t, d.content, d.start, d.stop);
        break;
      case DecoderStep::kMetaspace:
        for (size_t i = 0; i < toks.size(); ++i) {
          std::string& t = toks[i];
          if (i == 0 && d.prepend_first && t.compare(0, d.pattern.size(), d.pattern) == 0) t.erase(0, d.pattern.size());
          t = ReplaceAll(std::move(t), d.pattern, " ");
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : toks) out += t;
  return out;
}

std::string StripChars(const std::string& t, const std::string& ch, int start, int stop) {
  size_t b = 0, e = t.size();
  for (int k = 0; k < start && t.compare(b, ch.size(), ch) == 0 && b < e; ++k) b += ch.size();
  for (int k = 0; k < stop && e >= b + ch.size() && t.compare(e - ch.size(), ch.size(), ch) == 0; ++k) e -= ch.size();
  return t.substr(b, e - b);
}

std::string ReplaceAll(std::string s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return s;
  std::string out;  // built anew: replacing in place would be quadratic on long texts
  out.reserve(s.size());
  size_t begin = 0;
  for (size_t pos; (pos = s.find(from, begin)) != std::string::npos; begin = pos + from.size()) {
    out.append(s, begin, pos - begin);
    out.append(to);
  }
  out.append(s, begin, std::string::npos);
  return out;
}

int ParseBytePiece(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  const int hi = hex(p[3]), lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace subq::tok
