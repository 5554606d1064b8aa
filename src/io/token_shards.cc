#include "io/token_shards.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace subq {
namespace {

namespace fs = std::filesystem;
constexpr char kMagic[8] = {'S', 'U', 'B', 'Q', 'T', 'O', 'K', '1'};
constexpr size_t kHeader = 32;
constexpr int kFormatVersion = 1;

void PutU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void PutU64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t GetU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

Status WriteAtomic(const fs::path& path, const void* header, size_t header_n, const void* data, size_t n) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Errorf("{}: cannot create file", tmp.string());
    if (header_n) f.write(static_cast<const char*>(header), static_cast<std::streamsize>(header_n));
    f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    f.flush();
    if (!f) return Errorf("{}: write failed (disk full?)", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Errorf("{}: cannot rename into place: {}", path.string(), ec.message());
  return Status::Ok();
}

nlohmann::json ShardsJson(const std::vector<ShardFile>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : v)
    a.push_back({{"file", s.file}, {"tokens", s.tokens}, {"docs", s.docs}, {"checksum", fmt::format("{:016x}", s.checksum)}});
  return a;
}

Status ParseShards(const nlohmann::json& j, const std::string& where, std::vector<ShardFile>* out) {
  if (!j.is_array()) return Errorf("{}: '{}' must be a list of shards", where, "splits");
  for (const auto& e : j) {
    ShardFile s;
    s.file = e.at("file").get<std::string>();
    s.tokens = e.at("tokens").get<int64_t>();
    s.docs = e.at("docs").get<int64_t>();
    s.checksum = std::stoull(e.at("checksum").get<std::string>(), nullptr, 16);
    if (s.file.empty() || s.file.find('/') != std::string::npos || s.tokens < 0 || s.docs < 0)
      return Errorf("{}: bad shard entry {}", where, e.dump());
    out->push_back(std::move(s));
  }
  return Status::Ok();
}

}  // namespace

uint64_t ShardChecksum(const uint8_t* data, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) h = (h ^ GetU64(data + i)) * 0x100000001B3ull + (h >> 29);
  for (; i < n; ++i) h = (h ^ data[i]) * 0x100000001B3ull;
  return h ^ (h >> 31);
}

// ---- writer ----

ShardWriter::ShardWriter(std::string dir, std::string split, int token_bytes, int64_t shard_tokens)
    : dir_(std::move(dir)), split_(std::move(split)), token_bytes_(token_bytes), shard_tokens_(shard_tokens) {}
ShardWriter::~ShardWriter() = default;

Status ShardWriter::Add(const std::vector<int>& ids) {
  if (cur_tokens_ > 0 && cur_tokens_ + static_cast<int64_t>(ids.size()) > shard_tokens_) SUBQ_RETURN_IF_ERROR(Flush());
  const size_t at = buf_.size();
  buf_.resize(at + ids.size() * token_bytes_);
  uint8_t* p = buf_.data() + at;
  for (int id : ids) {
    const uint32_t v = static_cast<uint32_t>(id);
    if (token_bytes_ == 2) {
      const uint16_t w = static_cast<uint16_t>(v);
      std::memcpy(p, &w, 2);
    } else {
      std::memcpy(p, &v, 4);
    }
    p += token_bytes_;
  }
  cur_tokens_ += static_cast<int64_t>(ids.size());
  total_tokens_ += static_cast<int64_t>(ids.size());
  ++cur_docs_;
  return Status::Ok();
}

Status ShardWriter::Flush() {
  if (cur_tokens_ == 0) return Status::Ok();
  ShardFile s;
  s.file = fmt::format("{}-{:05d}.tok", split_, done_.size());
  s.tokens = cur_tokens_;
  s.docs = cur_docs_;
  s.checksum = ShardChecksum(buf_.data(), buf_.size());
  uint8_t h[kHeader] = {};
  std::memcpy(h, kMagic, 8);
  PutU32(h + 8, static_cast<uint32_t>(token_bytes_));
  PutU64(h + 16, static_cast<uint64_t>(s.tokens));
  PutU64(h + 24, s.checksum);
  SUBQ_RETURN_IF_ERROR(WriteAtomic(fs::path(dir_) / s.file, h, kHeader, buf_.data(), buf_.size()));
  done_.push_back(std::move(s));
  buf_.clear();
  cur_tokens_ = cur_docs_ = 0;
  return Status::Ok();
}

Result<std::vector<ShardFile>> ShardWriter::Finish() {
  SUBQ_RETURN_IF_ERROR(Flush());
  return done_;
}

// ---- index ----

Status WriteShardIndex(const std::string& dir, const ShardIndex& x) {
  nlohmann::json j = {{"format", "subq-token-shards"}, {"version", kFormatVersion}, {"token_bytes", x.token_bytes},
                      {"tokenizer", x.tokenizer}, {"vocab_size", x.vocab_size}, {"bos_id", x.bos_id},
                      {"eos_id", x.eos_id}, {"add_bos", x.add_bos}, {"add_eos", x.add_eos},
                      {"splits", {{"train", ShardsJson(x.train)}, {"held_out", ShardsJson(x.held_out)}}}};
  const std::string text = j.dump(1) + "\n";
  return WriteAtomic(fs::path(dir) / "index.json", nullptr, 0, text.data(), text.size());
}

bool IsShardFolder(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / "index.json", ec);
}

Result<ShardIndex> ReadShardIndex(const std::string& dir) {
  const std::string path = (fs::path(dir) / "index.json").string();
  std::ifstream f(path);
  if (!f) return Errorf("{}: cannot open (not a folder written by `subq data prepare`, or it did not finish)", path);
  ShardIndex x;
  try {
    const nlohmann::json j = nlohmann::json::parse(f);
    if (j.value("format", "") != "subq-token-shards") return Errorf("{}: not a subq token-shard index", path);
    if (j.at("version").get<int>() != kFormatVersion)
      return Errorf("{}: format version {} (this build reads {})", path, j.at("version").get<int>(), kFormatVersion);
    x.token_bytes = j.at("token_bytes").get<int>();
    x.tokenizer = j.at("tokenizer").get<std::string>();
    x.vocab_size = j.at("vocab_size").get<int>();
    x.bos_id = j.at("bos_id").get<int>();
    x.eos_id = j.at("eos_id").get<int>();
    x.add_bos = j.at("add_bos").get<bool>();
    x.add_eos = j.at("add_eos").get<bool>();
    SUBQ_RETURN_IF_ERROR(ParseShards(j.at("splits").at("train"), path, &x.train));
    SUBQ_RETURN_IF_ERROR(ParseShards(j.at("splits").at("held_out"), path, &x.held_out));
  } catch (const std::exception& e) {
    return Errorf("{}: malformed index: {}", path, e.what());
  }
  if (x.token_bytes != 2 && x.token_bytes != 4) return Errorf("{}: token_bytes must be 2 or 4", path);
  if (x.vocab_size < 1 || (x.token_bytes == 2 && x.vocab_size > 65536))
    return Errorf("{}: vocab_size {} does not fit {} bytes per token", path, x.vocab_size, x.token_bytes);
  return x;
}

// ---- readers ----

Status VectorTokenSource::Read(int64_t offset, int64_t n, int* out) const {
  if (offset < 0 || n < 0 || offset + n > size()) return Errorf("token read [{}, {}) outside {} tokens", offset, offset + n, size());
  std::copy(ids_->begin() + offset, ids_->begin() + offset + n, out);
  return Status::Ok();
}

Result<std::unique_ptr<ShardReader>> ShardReader::Open(const std::string& dir, const std::string& split,
                                                       bool verify_checksums) {
  SUBQ_ASSIGN_OR_RETURN(ShardIndex idx, ReadShardIndex(dir));
  std::unique_ptr<ShardReader> r(new ShardReader());
  r->index_ = idx;
  const auto& list = split == "train" ? idx.train : idx.held_out;
  for (const auto& s : list) {
    const std::string path = (fs::path(dir) / s.file).string();
    SUBQ_ASSIGN_OR_RETURN(auto f, MappedFile::Open(path));
    const uint64_t want = kHeader + static_cast<uint64_t>(s.tokens) * idx.token_bytes;
    if (f->size() < kHeader || std::memcmp(f->data(), kMagic, 8) != 0)
      return Errorf("{}: not a subq token shard (bad magic)", path);
    if (GetU32(f->data() + 8) != static_cast<uint32_t>(idx.token_bytes) || GetU64(f->data() + 16) != static_cast<uint64_t>(s.tokens))
      return Errorf("{}: header says {} tokens of {} bytes, index.json says {} of {}", path, GetU64(f->data() + 16),
                    GetU32(f->data() + 8), s.tokens, idx.token_bytes);
    if (f->size() != want)
      return Errorf("{}: {} bytes, expected {} for {} tokens: the shard is truncated or corrupt", path, f->size(), want,
                    s.tokens);
    if (verify_checksums && ShardChecksum(f->data() + kHeader, want - kHeader) != s.checksum)
      return Errorf("{}: checksum mismatch: the shard is corrupt (re-run `subq data prepare`)", path);
    r->shards_.push_back({f, f->data() + kHeader, s.tokens, r->total_});
    r->total_ += s.tokens;
  }
  return r;
}

Status ShardReader::Read(int64_t offset, int64_t n, int* out) const {
  if (offset < 0 || n < 0 || offset + n > total_)
    return Errorf("token read [{}, {}) outside {} tokens", offset, offset + n, total_);
  // First shard holding `offset` (shards are few: linear from a binary search start).
  auto it = std::upper_bound(shards_.begin(), shards_.end(), offset,
                             [](int64_t o, const Mapped& m) { return o < m.start; });
  size_t si = static_cast<size_t>(std::distance(shards_.begin(), it)) - 1;
  const int vocab = index_.vocab_size;
  while (n > 0) {
    const Mapped& m = shards_[si];
    const int64_t local = offset - m.start, take = std::min(n, m.tokens - local);
    for (int64_t i = 0; i < take; ++i) {
      const uint8_t* p = m.payload + (local + i) * index_.token_bytes;
      const int id = index_.token_bytes == 2 ? static_cast<int>(p[0] | (p[1] << 8)) : static_cast<int>(GetU32(p));
      if (id < 0 || id >= vocab)
        return Errorf("{}: token {} is id {}, outside the vocab of {}: the shard is corrupt", m.file->path(),
                      local + i, id, vocab);
      out[i] = id;
    }
    out += take;
    offset += take;
    n -= take;
    ++si;
  }
  return Status::Ok();
}

}  // namespace subq
