// Exact prefix-state cache: snapshots of a whole SequenceState (recurrent + conv state, any KV cache)
// keyed by the token prefix that produced them, least-recently-used entries evicted to stay within a
// byte budget. A prompt that extends a cached prefix restores the snapshot and prefills only the rest;
// since snapshots are exact at token boundaries, outputs equal those of a full prefill.
#pragma once
#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

#include "model/sequence_state.h"

namespace subq::serve {

class PrefixCache {
 public:
  explicit PrefixCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Stores the state reached after tokens[0, n) (a copy), with the logits of token n - 1 when given (they let
  // a prompt equal to the prefix skip prefill entirely); no-op when larger than the budget.
  void Insert(const std::vector<int>& tokens, int n, const SequenceState& state, const float* logits = nullptr,
              int vocab = 0);
  // Longest cached prefix of tokens[0, limit): restores it into `state` and returns its length (0: none).
  // A prefix of length `limit` counts only when it has logits, which are then copied to `logits`.
  int Lookup(const std::vector<int>& tokens, int limit, SequenceState& state, std::vector<float>& logits);

  size_t bytes() const { return bytes_; }
  size_t entries() const { return lru_.size(); }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Entry {
    std::vector<int> tokens;
    SequenceState state;
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
