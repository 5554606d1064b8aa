#include "serve/prefix_cache.h"

#include <algorithm>

namespace subq::serve {
namespace {

// FNV-1a over the token ids, extended one token at a time so that every prefix's hash costs O(1).
constexpr uint64_t kSeed = 1469598103934665603ull;
uint64_t HashStep(uint64_t h, int token) {
  const uint32_t t = static_cast<uint32_t>(token);
  for (int b = 0; b < 4; ++b) h = (h ^ ((t >> (8 * b)) & 0xff)) * 1099511628211ull;
  return h;
}
uint64_t HashPrefix(const std::vector<int>& tokens, int n) {
  uint64_t h = kSeed;
  for (int i = 0; i < n; ++i) h = HashStep(h, tokens[i]);
  return h;
}

}  // namespace

void PrefixCache::Insert(const std::vector<int>& tokens, int n, Backend& backend, const BackendSeq& seq,
                         const float* logits, int vocab) {
  if (n <= 0 || max_bytes_ == 0) return;
  const uint64_t h = HashPrefix(tokens, n);
  auto [lo, hi] = index_.equal_range(h);
  for (auto it = lo; it != hi; ++it) {
    const Entry& e = *it->second;
    if (static_cast<int>(e.tokens.size()) == n && std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin())) {
      if (e.logits.empty() && logits) break;  // replaced below by the entry with logits
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
  }
  Erase(h, tokens, n);
  const size_t b = seq.snapshot_bytes() + n * sizeof(int) + (logits ? vocab * sizeof(float) : 0);
  if (b > max_bytes_) return;
  EvictTo(max_bytes_ - b);
  auto snap = backend.Snapshot(seq);
  if (!snap) return;
  std::vector<float> lg;
  if (logits) lg.assign(logits, logits + vocab);
  lru_.push_front(Entry{std::vector<int>(tokens.begin(), tokens.begin() + n), std::move(snap), std::move(lg), b, h});
  index_.emplace(h, lru_.begin());
  bytes_ += b;
}

int PrefixCache::Lookup(const std::vector<int>& tokens, int limit, Backend& backend, BackendSeq& seq,
                        std::vector<float>& logits) {
  limit = std::min<int>(limit, static_cast<int>(tokens.size()));
  if (lru_.empty() || limit <= 0) {
    ++misses_;
    return 0;
  }
  std::vector<uint64_t> hashes(limit + 1);
  hashes[0] = kSeed;
  for (int i = 0; i < limit; ++i) hashes[i + 1] = HashStep(hashes[i], tokens[i]);
  for (int n = limit; n > 0; --n) {
    auto [lo, hi] = index_.equal_range(hashes[n]);
    for (auto it = lo; it != hi; ++it) {
      Entry& e = *it->second;
      if (static_cast<int>(e.tokens.size()) != n || !std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin()))
        continue;
      if (e.state->max_context() < seq.max_context()) continue;  // its KV caches would be too small
      if (n == limit && e.logits.empty()) continue;
      backend.Restore(*e.state, seq);
      if (n == limit) logits = e.logits;
      lru_.splice(lru_.begin(), lru_, it->second);
      ++hits_;
      return n;
    }
  }
  ++misses_;
  return 0;
}

void PrefixCache::Remove(std::list<Entry>::iterator e) {
  auto [lo, hi] = index_.equal_range(e->hash);
  for (auto it = lo; it != hi; ++it)
    if (it->second == e) {
      index_.erase(it);
      break;
    }
  bytes_ -= e->bytes;
  lru_.erase(e);
}

void PrefixCache::Erase(uint64_t h, const std::vector<int>& tokens, int n) {
  auto [lo, hi] = index_.equal_range(h);
  for (auto it = lo; it != hi; ++it) {
    const Entry& e = *it->second;
    if (static_cast<int>(e.tokens.size()) == n && std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin())) {
      Remove(it->second);
      return;
    }
  }
}

void PrefixCache::EvictTo(size_t budget) {
  while (bytes_ > budget && !lru_.empty()) Remove(std::prev(lru_.end()));
}

}  // namespace subq::serve
