// Tokenized corpus shards (written by `subq data prepare`, read by the trainer): a folder with
//   index.json            format, tokenizer (name, vocab, BOS/EOS ids), token width, document framing,
//                         and per split ("train", "held_out") the list of shards (file, tokens, docs, checksum)
//   train-00000.tok ...   each a 32-byte header (magic "SUBQTOK1", u32 bytes per token (2 or 4), u32 0,
//   held_out-00000.tok    u64 tokens, u64 checksum of the payload) then the little-endian token ids.
// Documents are packed back to back, each framed as the teacher expects (BOS first, EOS last if asked).
// index.json is written last, so a folder without it is an unfinished preparation. The reader maps the
// files and checks every header and size against the index before handing out a token; ids are checked
// against the vocab as they are read. No torch here.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/tensor_store.h"
#include "util/status.h"

namespace subq {

struct ShardFile {
  std::string file;  // name inside the folder
  int64_t tokens = 0, docs = 0;
  uint64_t checksum = 0;
};

struct ShardIndex {
  int token_bytes = 2;  // 2 (uint16, vocab <= 65536) or 4 (uint32)
  std::string tokenizer;
  int vocab_size = 0, bos_id = -1, eos_id = -1;
  bool add_bos = true, add_eos = false;  // document framing
  std::vector<ShardFile> train, held_out;
};

// 64-bit checksum of a payload (8-byte words mixed multiplicatively, then the tail bytes).
uint64_t ShardChecksum(const uint8_t* data, size_t n);

// Streams documents of one split into shard files of at most `shard_tokens` tokens (a document is
// never split across shards unless it alone exceeds the limit). Each file is written as name.tmp and
// renamed when complete.
class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string split, int token_bytes, int64_t shard_tokens);
  ~ShardWriter();
  Status Add(const std::vector<int>& ids);  // one framed document
  Result<std::vector<ShardFile>> Finish();
  int64_t tokens() const { return total_tokens_; }

 private:
  Status Flush();
  std::string dir_, split_;
  int token_bytes_;
  int64_t shard_tokens_;
  std::vector<uint8_t> buf_;  // payload of the current shard
  int64_t cur_tokens_ = 0, cur_docs_ = 0, total_tokens_ = 0;
  std::vector<ShardFile> done_;
};

// Writes dir/index.json atomically.
Status WriteShardIndex(const std::string& dir, const ShardIndex& index);
// Reads and validates dir/index.json (not the shards).
Result<ShardIndex> ReadShardIndex(const std::string& dir);
// True when `path` is a folder holding index.json.
bool IsShardFolder(const std::string& path);

// A token stream that can be read at any offset: the trainer's view of a corpus.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual int64_t size() const = 0;
  // Copies ids [offset, offset + n) to out; an error names the shard and position of a bad id.
  virtual Status Read(int64_t offset, int64_t n, int* out) const = 0;
};

// An in-memory stream (text corpora tokenised at start-up).
class VectorTokenSource : public TokenSource {
 public:
  explicit VectorTokenSource(const std::vector<int>* ids) : ids_(ids) {}
  int64_t size() const override { return static_cast<int64_t>(ids_->size()); }
  Status Read(int64_t offset, int64_t n, int* out) const override;

 private:
  const std::vector<int>* ids_;
};

// One split of a shard folder, memory-mapped, as one virtual stream (shards concatenated in index order).
class ShardReader : public TokenSource {
 public:
  // Maps every shard of `split` and checks magic, token width, token count and file size against the
  // index; with verify_checksums, also reads every payload and compares its checksum.
  static Result<std::unique_ptr<ShardReader>> Open(const std::string& dir, const std::string& split,
                                                   bool verify_checksums);
  int64_t size() const override { return total_; }
  Status Read(int64_t offset, int64_t n, int* out) const override;
  const ShardIndex& index() const { return index_; }

 private:
  struct Mapped {
    std::shared_ptr<MappedFile> file;
    const uint8_t* payload = nullptr;
    int64_t tokens = 0, start = 0;  // start: offset of its first token in the virtual stream
  };
  ShardIndex index_;
  std::vector<Mapped> shards_;
  int64_t total_ = 0;
};

}  // namespace subq
