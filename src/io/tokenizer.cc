// Tokenizer loading by file kind, the checkpoint -> tokenizer lookup, streaming decode, and the UTF-8
// helpers the implementations share.
#include "io/tokenizer.h"

#include <filesystem>

#include "io/tokenizer_impl.h"

namespace subq {
namespace fs = std::filesystem;

namespace tok {

int Utf8SeqLen(uint8_t b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

namespace {
// Length of the valid UTF-8 sequence at s[pos], 0 if the bytes there are not one. *prefix_len gets the
// length of the longest valid prefix of a sequence (for the maximal-subpart rule), at least 1.
size_t ValidSeqAt(std::string_view s, size_t pos, size_t* prefix_len) {
  const uint8_t b0 = static_cast<uint8_t>(s[pos]);
  *prefix_len = 1;
  if (b0 < 0x80) return 1;
  int n = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) n = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) { n = 3; if (b0 == 0xE0) lo = 0xA0; if (b0 == 0xED) hi = 0x9F; }
  else if (b0 >= 0xF0 && b0 <= 0xF4) { n = 4; if (b0 == 0xF0) lo = 0x90; if (b0 == 0xF4) hi = 0x8F; }
  else return 0;
  for (int k = 1; k < n; ++k) {
    if (pos + k >= s.size()) return 0;
    const uint8_t b = static_cast<uint8_t>(s[pos + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
    *prefix_len = k + 1;
  }
  return n;
}
}  // namespace

uint32_t NextCodepoint(std::string_view s, size_t* pos) {
  size_t prefix = 0;
  const size_t n = ValidSeqAt(s, *pos, &prefix);
  if (n == 0) { *pos += 1; return 0xFFFD; }
  const auto* u = reinterpret_cast<const uint8_t*>(s.data() + *pos);
  uint32_t cp = n == 1 ? u[0] : n == 2 ? (u[0] & 0x1F) : n == 3 ? (u[0] & 0x0F) : (u[0] & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (u[k] & 0x3F);
  *pos += n;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t IncompleteUtf8Tail(std::string_view s) {
  // Walk back over at most 3 continuation bytes to a lead byte; the tail is incomplete when the lead
  // announces more bytes than follow it and what follows is a valid prefix.
  for (size_t back = 1; back <= 4 && back <= s.size(); ++back) {
    const size_t pos = s.size() - back;
    const uint8_t b = static_cast<uint8_t>(s[pos]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte
    if (b < 0xC2 || b > 0xF4) return 0;  // ASCII or a byte that never starts a sequence
    size_t prefix = 0;
    const int want = Utf8SeqLen(b);
    if (want <= static_cast<int>(back)) return 0;
    ValidSeqAt(s, pos, &prefix);
    return prefix == back ? back : 0;
  }
  return 0;
}

std::string Utf8Lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    size_t prefix = 0;
    const size_t n = ValidSeqAt(s, pos, &prefix);
    if (n > 0) {
      out.append(s.substr(pos, n));
      pos += n;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += prefix;
    }
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t pos = 0, prefix = 0;
  while (pos < s.size()) {
    const size_t n = ValidSeqAt(s, pos, &prefix);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

}  // namespace tok

size_t FirstNonTextByte(std::string_view text) {
  size_t pos = 0, prefix = 0;
  while (pos < text.size()) {
    const size_t n = tok::ValidSeqAt(text, pos, &prefix);
    if (n == 0 || text[pos] == '\0') return pos;
    pos += n;
  }
  return std::string_view::npos;
}

// ---- loading ----

Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer.bin"}) {
      const fs::path p = fs::path(path) / name;
      if (fs::exists(p, ec)) return LoadTokenizer(p.string());
    }
    return Errorf("{}: folder has no tokenizer (looked for tokenizer.json, tokenizer.model, tokenizer.bin)", path);
  }
  if (!fs::exists(path, ec)) return Errorf("{}: tokenizer file not found", path);
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".bin") return tok::LoadLlama2cTokenizer(path);
  if (ext == ".tiktoken" || (ext == ".model" && tok::LooksLikeTiktoken(path))) return tok::LoadTiktokenTokenizer(path);
  if (ext == ".model") return tok::LoadSentencePieceTokenizer(path);
  if (ext == ".json") return tok::LoadHfJsonTokenizer(path);
  if (ext == ".gguf") {
    SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadGguf(path));
    return TokenizerForCheckpoint(ck);
  }
  return Errorf("{}: unknown tokenizer kind (expected a llama2.c .bin, a SentencePiece or tiktoken .model, a "
                ".tiktoken, a tokenizer.json, a .gguf, or a folder holding one)",
                path);
}

Result<std::unique_ptr<Tokenizer>> TokenizerForCheckpoint(const Checkpoint& ckpt) {
  if (ckpt.format == "gguf") {
    if (ckpt.vocab.empty()) return Errorf("{}: GGUF file has no embedded tokenizer (pass --tokenizer)", ckpt.path);
    if (ckpt.vocab.model != "llama")
      return Errorf("{}: embedded tokenizer model '{}' is not supported (only 'llama'; pass --tokenizer)", ckpt.path,
                    ckpt.vocab.model);
    return tok::MakeEmbeddedVocabTokenizer(ckpt.vocab, "gguf " + fs::path(ckpt.path).filename().string());
  }
  if (ckpt.format == "hf") {
    std::error_code ec;
    const fs::path dir = fs::is_directory(ckpt.path, ec) ? fs::path(ckpt.path) : fs::path(ckpt.path).parent_path();
    for (const char* name : {"tokenizer.json", "tokenizer.model"})
      if (fs::exists(dir / name, ec)) return LoadTokenizer((dir / name).string());
    return Errorf("{}: no tokenizer.json or tokenizer.model in the model folder (pass --tokenizer)", dir.string());
  }
  // llama2.c: the tokenizer sits beside the model.
  const fs::path dir = fs::path(ckpt.path).parent_path();
  const int V = ckpt.config.vocab_size;
  const fs::path candidates[] = {dir / "tokenizer.bin", dir / fmt::format("tok{}.bin", V)};
  std::error_code ec;
  for (const fs::path& p : candidates)
    if (fs::exists(p, ec)) return tok::LoadLlama2cTokenizer(p.string(), V);
  return Errorf("{}: no llama2.c tokenizer found beside the model (looked for {} and {}); pass --tokenizer",
                ckpt.path, candidates[0].string(), candidates[1].string());
}

Status CheckVocabMatches(const Tokenizer& tok, int model_vocab, const std::string& tok_path, bool allow_padding) {
  const int tv = tok.vocab_size();
  if (tv == model_vocab || (allow_padding && tv < model_vocab)) return Status::Ok();
  return Errorf("{}: tokenizer has {} tokens but the model's vocabulary has {}{}", tok_path, tv, model_vocab,
                allow_padding ? " (the tokenizer must not be larger)" : "");
}

// ---- streaming decode ----

namespace {
// Bytes of `text` that are stable: without an incomplete UTF-8 tail or trailing U+FFFD (which a
// lossy decoder emits for an incomplete sequence that the next token may complete).
size_t StableLength(const std::string& text) {
  size_t n = text.size() - tok::IncompleteUtf8Tail(text);
  while (n >= 3 && text.compare(n - 3, 3, "\xEF\xBF\xBD") == 0) n -= 3;
  return n;
}
}  // namespace

DecodeStream::DecodeStream(const Tokenizer& tok, std::vector<int> prompt_ids)
    : tok_(tok), window_(std::move(prompt_ids)) {
  // The prompt's text is the caller's; only its tail matters as context for what follows.
  if (window_.size() > kMaxWindow) window_.erase(window_.begin(), window_.end() - kMaxWindow / 2);
  const std::string text = tok_.Decode(window_);
  emitted_ = StableLength(text);
  if (emitted_ == text.size()) ShrinkWindow(text);
}

std::string DecodeStream::Next(int id) {
  window_.push_back(id);
  const std::string text = tok_.Decode(window_);
  const size_t stable = window_.size() > kMaxWindow ? text.size() : StableLength(text);
  std::string out;
  if (stable > emitted_) {
    out = text.substr(emitted_, stable - emitted_);
    emitted_ = stable;
  }
  if (emitted_ >= text.size()) ShrinkWindow(text);
  return out;
}

void DecodeStream::ShrinkWindow(const std::string& text) {
  constexpr size_t kMaxContext = 8;
  for (size_t k = 1; k < window_.size() && k <= kMaxContext; ++k) {
    std::vector<int> context(window_.end() - k, window_.end());
    const std::string d = tok_.Decode(context);
    if (d.empty() || d.size() > text.size() || StableLength(d) != d.size() ||
        text.compare(text.size() - d.size(), d.size(), d) != 0)
      continue;
    window_ = std::move(context);
    emitted_ = d.size();
    return;
  }
  if (window_.size() > kMaxWindow) {  // no clean context: restart from the last token
    window_.erase(window_.begin(), window_.end() - 1);
    emitted_ = tok_.Decode(window_).size();
  }
}

}  // namespace subq
