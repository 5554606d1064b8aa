// Causal softmax attention with GQA, RoPE (interleaved or rotate-half, llama3 scaling) and a KV cache.
#pragma once
#include <vector>

#include "model/layer.h"

namespace subq {

// Inverse frequencies of RoPE for `head_dim`, with llama3 scaling when configured (SPEC section 1).
std::vector<float> RopeInvFreq(const AttentionConfig& a);
// Rotates `n_heads` heads of `head_dim` in x (one token at position `pos`) in place.
void ApplyRope(float* x, int n_heads, int head_dim, int pos, const std::vector<float>& inv_freq, bool interleaved);

// KV cache of one attention layer (or of the kept heads of a head-level hybrid layer).
class KvCache : public LayerState {
 public:
  KvCache(int n_kv_heads, int head_dim) : n_kv_(n_kv_heads), hd_(head_dim) {}
  std::unique_ptr<LayerState> Clone() const override { return std::make_unique<KvCache>(*this); }
  size_t Bytes() const override { return static_cast<size_t>(len_) * n_kv_ * hd_ * 2 * sizeof(float); }
  int len() const { return len_; }
  // Makes room for `n` more tokens (grows geometrically; no allocation once capacity suffices).
  void Reserve(int n);
  float* k_at(int t) { return k.data() + static_cast<size_t>(t) * n_kv_ * hd_; }
  float* v_at(int t) { return v.data() + static_cast<size_t>(t) * n_kv_ * hd_; }
  void Advance(int n) { len_ += n; }

 private:
  int n_kv_, hd_;
  int len_ = 0;
  int cap_ = 0;
  std::vector<float> k, v;  // [cap, n_kv, hd]
};

// Attention over cached keys/values for L new query tokens. q: [L, n_heads*hd] already rotated;
// cache holds len()+L tokens (the new ones appended). out: [L, n_heads*hd]. probs (optional):
// [n_heads, L, cache_len] attention probabilities.
void AttendCausal(const float* q, int L, int n_heads, int n_kv_heads, int hd, KvCache& cache, float* out,
                  float* probs = nullptr);

}  // namespace subq
