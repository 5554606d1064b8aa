#include "train/data.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/text_data.h"

namespace subq::train {

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<std::string> SplitDocuments(const std::string& text, const std::string& separator) {
  std::vector<std::string> docs;
  auto push = [&](size_t a, size_t b) {
    const std::string d = text.substr(a, b - a);
    const size_t s = d.find_first_not_of(" \t\r\n"), e = d.find_last_not_of(" \t\r\n");
    if (s != std::string::npos) docs.push_back(d.substr(s, e - s + 1));
  };
  if (separator.empty()) {
    push(0, text.size());
    return docs;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string::npos) end = text.size();
    push(start, end);
    start = end + separator.size();
  }
  return docs;
}

namespace {

Status CheckCorpusSize(const Corpus& c, int64_t train_tokens, int seq_len) {
  if (train_tokens < seq_len)
    return Errorf("corpus has {} training tokens, fewer than one sequence of seq_len {}", train_tokens, seq_len);
  if (static_cast<int64_t>(c.held_out.size()) < 2)
    return Errorf("corpus has {} held-out tokens; need at least 2", c.held_out.size());
  return Status::Ok();
}

Result<Corpus> OpenShardCorpus(const DataRecipe& data, const Tokenizer& tok, int seq_len) {
  Corpus c;
  SUBQ_ASSIGN_OR_RETURN(c.shards, ShardReader::Open(data.shards, "train", /*verify_checksums=*/true));
  const ShardIndex& idx = c.shards->index();
  if (idx.vocab_size != tok.vocab_size() || idx.bos_id != tok.bos_id())
    return Errorf("{}: shards were tokenized with {} (vocab {}, BOS {}), but the teacher's tokenizer is {} (vocab {}, BOS {})",
                  data.shards, idx.tokenizer, idx.vocab_size, idx.bos_id, tok.name(), tok.vocab_size(), tok.bos_id());
  SUBQ_ASSIGN_OR_RETURN(auto held, ShardReader::Open(data.shards, "held_out", /*verify_checksums=*/true));
  // Enough held-out tokens for eval_tokens scored positions in windows of seq_len + 1.
  const int64_t want = std::min(held->size(), data.eval_tokens + 2 * (seq_len + 1));
  c.held_out.resize(want);
  SUBQ_RETURN_IF_ERROR(held->Read(0, want, c.held_out.data()));
  for (const auto& s : idx.train) c.train_docs += s.docs;
  std::ifstream f(std::filesystem::path(data.shards) / "held_out.txt", std::ios::binary);
  std::stringstream ss;
  if (f) ss << f.rdbuf();
  c.held_out_text = ss.str();
  SUBQ_RETURN_IF_ERROR(CheckCorpusSize(c, c.shards->size(), seq_len));
  return c;
}

}  // namespace

Result<Corpus> BuildCorpus(const DataRecipe& data, const Tokenizer& tok, int seq_len) {
  if (!data.shards.empty()) return OpenShardCorpus(data, tok, seq_len);
  Corpus c;
  for (const auto& path : data.files) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return Errorf("{}: cannot open corpus file", path);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    SUBQ_RETURN_IF_ERROR(CheckUtf8Text(text, path));
    std::vector<std::string> docs = SplitDocuments(text, data.separator);
    if (docs.empty()) return Errorf("{}: corpus file has no text", path);
    // Documents are whole stories: a single long document is split by characters instead.
    size_t n_held = static_cast<size_t>(docs.size() * data.held_out_fraction);
    if (docs.size() == 1) {
      const std::string& d = docs[0];
      const size_t cut = static_cast<size_t>(d.size() * (1.0 - data.held_out_fraction));
      docs = {d.substr(0, cut), d.substr(cut)};
      n_held = 1;
    }
    if (n_held == 0) n_held = 1;
    if (n_held >= docs.size()) return Errorf("{}: too few documents ({}) for a held-out split", path, docs.size());
    const size_t n_train = docs.size() - n_held;
    for (size_t i = 0; i < docs.size(); ++i) {
      std::vector<int> ids = tok.Encode(docs[i], /*add_bos=*/true);
      auto& dst = i < n_train ? c.train : c.held_out;
      dst.insert(dst.end(), ids.begin(), ids.end());
      if (i >= n_train) c.held_out_text += docs[i] + "\n" + data.separator + "\n";
    }
    c.train_docs += n_train;
  }
  SUBQ_RETURN_IF_ERROR(CheckCorpusSize(c, static_cast<int64_t>(c.train.size()), seq_len));
  for (int id : c.train)
    if (id < 0 || id >= tok.vocab_size()) return Errorf("tokenizer produced id {} outside its vocab", id);
  return c;
}

SequenceSampler::SequenceSampler(const TokenSource* stream, int seq_len, uint64_t seed)
    : stream_(stream), seq_len_(seq_len), seed_(seed), n_seq_(stream->size() / seq_len) {}

Status SequenceSampler::Get(uint64_t k, int* out) {
  const int64_t epoch = static_cast<int64_t>(k / n_seq_);
  if (epoch != perm_epoch_) {  // Fisher-Yates with a per-epoch seed
    perm_.resize(n_seq_);
    for (int64_t i = 0; i < n_seq_; ++i) perm_[i] = i;
    uint64_t st = seed_ * 0x100000001B3ull + static_cast<uint64_t>(epoch);
    for (int64_t i = n_seq_ - 1; i > 0; --i) std::swap(perm_[i], perm_[SplitMix64(&st) % (i + 1)]);
    perm_epoch_ = epoch;
  }
  return stream_->Read(perm_[k % n_seq_] * seq_len_, seq_len_, out);
}

}  // namespace subq::train
