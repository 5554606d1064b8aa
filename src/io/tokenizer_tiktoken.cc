// tiktoken BPE files: one "<base64 token bytes> <rank>" line per token, as Llama-3's original
// tokenizer.model (and OpenAI's *.tiktoken files). The file holds neither the split pattern nor the
// special tokens; they are the model's: the Llama-3 pattern, and for a file of 128000 ranks Llama-3's
// 256 special tokens at ids 128000..128255 (the names of Llama 3.1 and later; 3.0 named the reserved
// ones differently, at the same ids for the tokens that matter: <|begin_of_text|>, <|end_of_text|>,
// <|start_header_id|>, <|end_header_id|>, <|eot_id|>).
// tiktoken merges, at each step, the adjacent pair whose concatenation has the lowest rank (leftmost on
// ties), and takes a pre-tokenized piece that is itself a token whole. The file becomes an HfBpeTokenizer
// that does the same: every split of a token into two tokens is a merge of the token's rank, and
// ignore_merges is on. Special tokens in the text are matched (tiktoken's allowed_special="all", and
// what HF's Llama-3 tokenizer.json does).
#include <fstream>

#include <openssl/evp.h>

#include "io/tokenizer_hf_json_impl.h"

namespace subq::tok {
namespace {

constexpr const char* kLlama3SplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr int kLlama3Ranks = 128000, kLlama3Specials = 256;

std::vector<std::string> Llama3SpecialTokens() {
  std::vector<std::string> s = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                                "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                                "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
  for (int i = 3; s.size() < kLlama3Specials; ++i) s.push_back(fmt::format("<|reserved_special_token_{}|>", i));
  return s;
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

// Standard base64 (with padding) through OpenSSL; false if `b64` is not valid base64.
bool DecodeBase64(std::string_view b64, std::string* out) {
  if (b64.empty() || b64.size() % 4 != 0) return false;
  out->resize(b64.size() / 4 * 3);
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out->data()),
                                reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
  if (n < 0) return false;
  size_t pad = 0;
  while (pad < 2 && b64[b64.size() - 1 - pad] == '=') ++pad;
  out->resize(static_cast<size_t>(n) - pad);
  return true;
}

}  // namespace

bool LooksLikeTiktoken(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string line;
  if (!f || !std::getline(f, line)) return false;
  const size_t sp = line.find(' ');
  if (sp == 0 || sp == std::string::npos || sp + 1 >= line.size()) return false;
  for (size_t i = 0; i < sp; ++i)
    if (!IsBase64Char(line[i])) return false;
  for (size_t i = sp + 1; i < line.size(); ++i)
    if (line[i] < '0' || line[i] > '9') return false;
  return true;
}

class TiktokenLoader {
 public:
  explicit TiktokenLoader(std::string path) : path_(std::move(path)) {}

  Result<std::unique_ptr<Tokenizer>> Load() {
    std::ifstream f(path_, std::ios::binary);
    if (!f) return Errorf("{}: cannot open", path_);
    auto t = std::make_unique<HfBpeTokenizer>();
    t->name_ = "tiktoken " + path_;
    std::vector<std::string> bytes_of_rank;
    std::string line, bytes;
    for (int lineno = 1; std::getline(f, line); ++lineno) {
      if (line.empty()) continue;
      const size_t sp = line.find(' ');
      int64_t rank = -1;
      if (sp != std::string::npos && sp + 1 < line.size() && sp + 9 >= line.size()) {
        rank = 0;
        for (size_t i = sp + 1; i < line.size() && rank >= 0; ++i)
          rank = line[i] >= '0' && line[i] <= '9' ? rank * 10 + (line[i] - '0') : -1;
      }
      if (rank < 0 || rank > kMaxRank || !DecodeBase64(std::string_view(line).substr(0, sp), &bytes) || bytes.empty())
        return Errorf("{}:{}: not a tiktoken line '<base64 token> <rank>': '{}'", path_, lineno, line.substr(0, 80));
      const std::string token = t->bytes_.Encode(bytes);
      if (!t->vocab_.emplace(token, static_cast<int>(rank)).second)
        return Errorf("{}:{}: token listed twice", path_, lineno);
      if (rank >= static_cast<int64_t>(bytes_of_rank.size())) bytes_of_rank.resize(rank + 1);
      if (!bytes_of_rank[rank].empty()) return Errorf("{}:{}: rank {} given twice", path_, lineno, rank);
      bytes_of_rank[rank] = bytes;
    }
    if (t->vocab_.empty()) return Errorf("{}: empty tiktoken file", path_);
    for (int b = 0; b < 256; ++b)
      if (!t->vocab_.count(t->bytes_.Encode(std::string(1, static_cast<char>(b)))))
        return Errorf("{}: byte 0x{:02X} has no rank (a tiktoken file ranks every single byte)", path_, b);
    const int n = static_cast<int>(bytes_of_rank.size());
    t->id_to_token_.resize(n);
    t->has_token_.assign(n, false);
    t->special_.assign(n, false);
    for (const auto& [tok, id] : t->vocab_) t->id_to_token_[id] = tok, t->has_token_[id] = true;
    for (int id = 0; id < n; ++id) {
      const std::string& b = bytes_of_rank[id];
      for (size_t k = 1; k < b.size(); ++k) {
        auto l = t->vocab_.find(t->bytes_.Encode(b.substr(0, k))), r = t->vocab_.find(t->bytes_.Encode(b.substr(k)));
        if (l != t->vocab_.end() && r != t->vocab_.end()) t->merges_[HfBpeTokenizer::PairKey(l->second, r->second)] = {id, id};
      }
    }
    t->ignore_merges_ = true;
    if (static_cast<int>(t->vocab_.size()) == kLlama3Ranks && n == kLlama3Ranks) AddLlama3Specials(t.get());
    PreTokenizerStep split;
    split.kind = PreTokenizerStep::kSplit;
    split.regex = Regex::Compile(kLlama3SplitRegex).value();
    PreTokenizerStep byte_level;
    byte_level.kind = PreTokenizerStep::kByteLevel;
    t->pre_ = {split, byte_level};
    DecoderStep dec;
    dec.kind = DecoderStep::kByteLevel;
    t->dec_ = {dec};
    return std::unique_ptr<Tokenizer>(std::move(t));
  }

 private:
  static constexpr int64_t kMaxRank = (1 << 24) - 1;

  static void AddLlama3Specials(HfBpeTokenizer* t) {
    const std::vector<std::string> names = Llama3SpecialTokens();
    for (size_t k = 0; k < names.size(); ++k) {
      AddedToken a;
      a.id = kLlama3Ranks + static_cast<int>(k);
      a.content = a.match = names[k];
      a.special = true;
      t->id_to_token_.push_back(a.content);
      t->has_token_.push_back(true);
      t->special_.push_back(true);
      t->added_by_first_byte_[0][static_cast<uint8_t>(a.match[0])].push_back(static_cast<int>(t->added_.size()));
      t->added_.push_back(std::move(a));
    }
    t->bos_ = kLlama3Ranks;      // <|begin_of_text|>
    t->eos_ = kLlama3Ranks + 1;  // <|end_of_text|>
  }

  std::string path_;
};

Result<std::unique_ptr<Tokenizer>> LoadTiktokenTokenizer(const std::string& path) { return TiktokenLoader(path).Load(); }

}  // namespace subq::tok
