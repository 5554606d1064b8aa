// Exact prefix-state cache: snapshots of a whole SequenceState (recurrent + conv state, any KV cache)
// keyed by the token prefix that produced them, least-recently-used entries evicted to stay within a
// byte budget. A prompt that extends a cached prefix restores the snapshot and prefills only the rest;
// since snapshots are exact at token boundaries, outputs equal those of a full prefill.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "serve/backend.h"

namespace subq::serve {

class PrefixCache {
 public:
  explicit PrefixCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Stores the state `seq` reached after tokens[0, n) (a backend snapshot), with the logits of token n - 1
  // when given (they let a prompt equal to the prefix skip prefill entirely); no-op when larger than the
  // budget or when the backend has no memory left for the snapshot.
  void Insert(const std::vector<int>& tokens, int n, Backend& backend, const BackendSeq& seq,
              const float* logits = nullptr, int vocab = 0);
  // Longest cached prefix of tokens[0, limit): restores it into `seq` and returns its length (0: none).
  // A prefix of length `limit` counts only when it has logits, which are then copied to `logits`.
  int Lookup(const std::vector<int>& tokens, int limit, Backend& backend, BackendSeq& seq, std::vector<float>& logits);

  size_t bytes() const { return bytes_; }
  size_t entries() const { return lru_.size(); }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Entry {
    std::vector<int> tokens;
    std::unique_ptr<BackendSnapshot> state;
    std::vector<float> logits;  // of the prefix's last token; empty when not kept
    size_t bytes;
    uint64_t hash;
  };
  void EvictTo(size_t budget);
  void Erase(uint64_t hash, const std::vector<int>& tokens, int n);
  void Remove(std::list<Entry>::iterator e);

  size_t max_bytes_, bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_multimap<uint64_t, std::list<Entry>::iterator> index_;  // prefix hash -> entry
};

}  // namespace subq::serve
