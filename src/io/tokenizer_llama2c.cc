// The SentencePiece-style BPE encoder of llama2.c (run.c encode()) over a vocabulary of scored pieces,
// used for llama2.c tokenizer.bin files and for the "llama" vocabulary embedded in GGUF files.
//
// Encode: optional BOS, a dummy-prefix space for non-empty text, one symbol per UTF-8 codepoint (bytes
// grouped as run.c groups them), codepoints missing from the vocabulary become byte tokens "<0xXX>"
// (or <unk> when the vocabulary has no byte tokens, with runs of <unk> fused as SentencePiece does),
// then repeatedly merge the adjacent pair whose concatenation is a piece with the highest score (the
// leftmost pair on ties). run.c rescans all pairs per merge (quadratic); a heap with lazy invalidation
// gives the same merges in O(n log n), so whole files can be encoded.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <queue>
#include <unordered_map>

#include "io/byte_cursor.h"
#include "io/tokenizer_impl.h"

namespace subq::tok {
namespace {

// SentencePiece / GGUF token types.
enum PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

class LlamaVocabTokenizer : public Tokenizer {
 public:
  LlamaVocabTokenizer(std::string name, std::vector<std::string> pieces, std::vector<float> scores,
                      std::vector<int> types, int bos, int eos, int unk, LlamaVocabOptions opt)
      : name_(std::move(name)), pieces_(std::move(pieces)), scores_(std::move(scores)), types_(std::move(types)),
        bos_(bos), eos_(eos), unk_(unk), opt_(opt) {
    std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
    for (int i = 0; i < static_cast<int>(pieces_.size()); ++i) {
      if (types_[i] == kByte) {
        const int b = ParseBytePiece(pieces_[i]);
        if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = i;
      } else if (types_[i] == kNormal || types_[i] == kUserDefined) {
        lookup_.emplace(pieces_[i], i);  // the first of duplicate pieces wins
      }
    }
    byte_fallback_ = std::find(std::begin(byte_ids_), std::end(byte_ids_), -1) == std::end(byte_ids_);
  }

  std::vector<int> Encode(const std::string& text, bool add_bos) const override;
  std::string Decode(const std::vector<int>& ids) const override;
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return bos_; }
  int eos_id() const override { return eos_; }
  std::string name() const override { return name_; }

 private:
  int Lookup(std::string_view s) const {
    auto it = lookup_.find(std::string(s));
    return it == lookup_.end() ? -1 : it->second;
  }

  std::string name_;
  std::vector<std::string> pieces_;  // spaces as ' ' (U+2581 already replaced)
  std::vector<float> scores_;
  std::vector<int> types_;
  int bos_, eos_, unk_;
  LlamaVocabOptions opt_;
  std::unordered_map<std::string, int> lookup_;  // pieces that text can produce (normal, user-defined)
  int byte_ids_[256];
  bool byte_fallback_ = false;
};

// SentencePiece's remove_extra_whitespaces: drop leading/trailing spaces, collapse runs to one.
std::string CollapseSpaces(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out.push_back(c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::vector<int> LlamaVocabTokenizer::Encode(const std::string& raw, bool add_bos) const {
  std::vector<int> out;
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  std::string text = opt_.remove_extra_whitespaces ? CollapseSpaces(raw) : raw;
  if (text.empty()) return out;
  if (opt_.add_dummy_prefix) text.insert(text.begin(), ' ');

  // Symbols: a doubly linked list over the initial tokens.
  struct Symbol {
    int id, prev, next;
    bool mergeable;
  };
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  auto push = [&](int id, bool mergeable) {
    const int n = static_cast<int>(sym.size());
    sym.push_back({id, n - 1, n + 1, mergeable});
  };
  for (size_t i = 0; i < text.size();) {
    // run.c: a codepoint is a lead byte plus following continuation bytes, at most 4 bytes.
    size_t j = i + 1;
    while (j < text.size() && j - i < 4 && (static_cast<uint8_t>(text[j]) & 0xC0) == 0x80) ++j;
    const std::string_view cp(text.data() + i, j - i);
    const int id = Lookup(cp);
    if (id >= 0) {
      push(id, true);
    } else if (byte_fallback_) {
      for (char c : cp) push(byte_ids_[static_cast<uint8_t>(c)], false);
    } else if (sym.empty() || sym.back().id != unk_ || sym.back().mergeable) {
      push(unk_, false);  // consecutive unknown codepoints fuse into one <unk>
    }
    i = j;
  }
  if (!sym.empty()) sym.back().next = -1;

  struct Pair {
    float score;
    int left, right, left_id, right_id, merged;
  };
  auto worse = [](const Pair& a, const Pair& b) {
    return a.score != b.score ? a.score < b.score : a.left > b.left;  // best = highest score, then leftmost
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> heap(worse);
  auto consider = [&](int l, int r) {
    if (l < 0 || r < 0 || !sym[l].mergeable || !sym[r].mergeable) return;
    const int id = Lookup(pieces_[sym[l].id] + pieces_[sym[r].id]);
    if (id >= 0) heap.push({scores_[id], l, r, sym[l].id, sym[r].id, id});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) consider(i, i + 1);
  while (!heap.empty()) {
    const Pair p = heap.top();
    heap.pop();
    Symbol& l = sym[p.left];
    if (l.id != p.left_id || l.next != p.right || sym[p.right].id != p.right_id) continue;  // stale
    Symbol& r = sym[p.right];
    l.id = p.merged;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = p.left;
    r.id = -1;  // dead
    consider(l.prev, p.left);
    consider(p.left, l.next);
  }
  for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
  return out;
}

std::string LlamaVocabTokenizer::Decode(const std::vector<int>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int id = ids[i];
    if (id < 0 || id >= vocab_size()) continue;
    const int type = types_[id];
    if (type == kControl || type == kUnused) continue;
    if (type == kUnknown) {
      out += " \xE2\x81\x87 ";  // SentencePiece's default unk surface " ⁇ "
      continue;
    }
    if (type == kByte) {
      const int b = ParseBytePiece(pieces_[id]);
      if (b >= 0) out.push_back(static_cast<char>(b));
      continue;
    }
    std::string_view piece = pieces_[id];
    // As run.c: the dummy-prefix space of the first piece (at the start or after BOS) is dropped.
    if ((i == 0 || ids[i - 1] == bos_) && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
    out.append(piece);
  }
  return out;
}

Status CheckSpecialIds(const std::string& path, int n, int bos, int eos, int unk) {
  for (auto [what, id] : {std::pair{"BOS", bos}, {"EOS", eos}, {"UNK", unk}})
    if (id < -1 || id >= n) return Errorf("{}: {} token id {} outside the vocabulary of {}", path, what, id, n);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> LoadLlama2cTokenizer(const std::string& path, int vocab_size, LlamaVocabOptions opt) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Errorf("{}: cannot open tokenizer file", path);
  const std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ByteCursor cur(reinterpret_cast<const uint8_t*>(data.data()), data.size(), path);
  int32_t max_len = 0;
  SUBQ_RETURN_IF_ERROR(cur.Read(&max_len, "max_token_length"));
  if (max_len <= 0 || max_len > (1 << 16))
    return Errorf("{}: implausible max_token_length {} (not a llama2.c tokenizer file?)", path, max_len);
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (vocab_size < 0 ? cur.remaining() > 0 : static_cast<int>(pieces.size()) < vocab_size) {
    const int i = static_cast<int>(pieces.size());
    float score = 0;
    int32_t len = 0;
    SUBQ_RETURN_IF_ERROR(cur.Read(&score, "token score"));
    SUBQ_RETURN_IF_ERROR(cur.Read(&len, "token length"));
    if (std::isnan(score)) return Errorf("{}: token {} has a NaN score", path, i);
    if (len < 0 || len > max_len)
      return Errorf("{}: token {} has length {} outside 0..max_token_length {}", path, i, len, max_len);
    SUBQ_RETURN_IF_ERROR(cur.Need(len, "token bytes"));
    pieces.emplace_back(reinterpret_cast<const char*>(cur.here()), len);
    SUBQ_RETURN_IF_ERROR(cur.Skip(len, "token bytes"));
    scores.push_back(score);
  }
  if (cur.remaining() != 0)
    return Errorf("{}: {} trailing bytes after {} tokens (the model's vocab_size does not match this tokenizer)",
                  path, cur.remaining(), pieces.size());
  if (pieces.size() < 3) return Errorf("{}: only {} tokens (need at least <unk>, <s>, </s>)", path, pieces.size());
  // llama2.c ids: 0 <unk>, 1 <s>, 2 </s>; "<0xXX>" pieces are byte tokens.
  std::vector<int> types(pieces.size(), kNormal);
  types[0] = kUnknown;
  types[1] = types[2] = kControl;
  for (size_t i = 3; i < pieces.size(); ++i)
    if (ParseBytePiece(pieces[i]) >= 0) types[i] = kByte;
  const std::string name = "llama2c " + std::filesystem::path(path).filename().string();
  return std::unique_ptr<Tokenizer>(new LlamaVocabTokenizer(name, std::move(pieces), std::move(scores),
                                                            std::move(types), 1, 2, 0, opt));
}

Result<std::unique_ptr<Tokenizer>> MakeEmbeddedVocabTokenizer(const EmbeddedVocab& v, const std::string& name,
                                                              LlamaVocabOptions opt) {
  const size_t n = v.tokens.size();
  if (n == 0) return Errorf("{}: empty embedded vocabulary", name);
  if (v.scores.size() != n)
    return Errorf("{}: embedded vocabulary has {} tokens but {} scores", name, n, v.scores.size());
  if (!v.token_types.empty() && v.token_types.size() != n)
    return Errorf("{}: embedded vocabulary has {} tokens but {} token types", name, n, v.token_types.size());
  std::vector<std::string> pieces;
  pieces.reserve(n);
  for (const std::string& t : v.tokens) pieces.push_back(ReplaceAll(t, "\xE2\x96\x81", " "));
  std::vector<int> types = v.token_types;
  if (types.empty()) {
    types.assign(n, kNormal);
    for (size_t i = 0; i < n; ++i)
      if (ParseBytePiece(pieces[i]) >= 0) types[i] = kByte;
  }
  const int ni = static_cast<int>(n);
  // llama defaults (as llama.cpp) when the file does not name the special tokens.
  const int bos = v.bos_id >= 0 ? v.bos_id : (ni > 1 ? 1 : -1);
  const int eos = v.eos_id >= 0 ? v.eos_id : (ni > 2 ? 2 : -1);
  const int unk = v.unk_id >= 0 ? v.unk_id : 0;
  SUBQ_RETURN_IF_ERROR(CheckSpecialIds(name, ni, bos, eos, unk));
  for (size_t i = 0; i < n; ++i) {
    if (types[i] < kNormal || types[i] > kByte)
      return Errorf("{}: token {} has unknown token type {}", name, i, types[i]);
    if (std::isnan(v.scores[i])) return Errorf("{}: token {} has a NaN score", name, i);
  }
  return std::unique_ptr<Tokenizer>(new LlamaVocabTokenizer(name, std::move(pieces), v.scores, std::move(types), bos,
                                                            eos, unk, opt));
}

}  // namespace subq::tok
