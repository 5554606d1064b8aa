// Causal softmax attention with GQA, RoPE (interleaved or rotate-half, llama3 scaling) and a KV cache.
#pragma once
#include <vector>

#include "model/layer.h"
#include "ops/weight.h"

namespace subq {

// Inverse frequencies of RoPE for `head_dim`, with llama3 scaling when configured (SPEC section 1).
std::vector<float> RopeInvFreq(const AttentionConfig& a);

// KV cache of one attention layer (or of the kept heads of a head-level hybrid layer), preallocated
// to the sequence's context limit: appending never allocates.
class KvCache : public LayerState {
 public:
  KvCache(int n_kv_heads, int head_dim, int capacity);
  std::unique_ptr<LayerState> Clone() const override { return std::make_unique<KvCache>(*this); }
  size_t Bytes() const override { return static_cast<size_t>(len_) * row() * 2 * sizeof(float); }
  size_t CapacityBytes() const override { return static_cast<size_t>(cap_) * row() * 2 * sizeof(float); }
  int len() const { return len_; }
  int capacity() const { return cap_; }
  int row() const { return n_kv_ * hd_; }  // floats per token of K (and of V)
  float* k_at(int t) { return k_.data() + static_cast<size_t>(t) * row(); }
  float* v_at(int t) { return v_.data() + static_cast<size_t>(t) * row(); }
  const float* k_at(int t) const { return k_.data() + static_cast<size_t>(t) * row(); }
  const float* v_at(int t) const { return v_.data() + static_cast<size_t>(t) * row(); }
  void Advance(int n) { len_ += n; }

 private:
  int n_kv_, hd_, cap_;
  int len_ = 0;
  std::vector<float> k_, v_;  // [cap, n_kv, hd]
};

// The attention core shared by attention layers and kept heads: for every sequence slice, rotate q
// [T, n_heads*hd] and the new keys k [T, n_kv*hd] at their positions, append k/v to the slice's cache
// (cache_of(slice)), and attend causally into att [T, n_heads*hd]. Parallel over (sequence, kv head).
struct AttentionCore {
  int n_heads = 0, n_kv_heads = 0, hd = 0;
  bool interleaved = false;
  std::vector<float> inv_freq;
  size_t ScratchFloats(int n_threads) const;
  // Attention probabilities [n_heads, L, L] of a fresh sequence: rotates q [L, n_heads*hd] and k
  // [L, n_kv*hd] in place at positions 0..L-1 (Materialize).
  Tensor Probabilities(float* q, float* k, int L) const;
  template <typename CacheOf>
  void Run(float* q, float* k, const float* v, std::span<const SeqSlice> seqs, ExecContext& ctx, CacheOf cache_of,
           float* att) const;
};

// Attention probabilities [n_heads, L, L] of rotated q [L, n_heads*hd] over k [L, n_kv*hd] (Materialize).
Tensor AttentionProbabilities(const float* q, const float* k, int L, int n_heads, int n_kv_heads, int hd);

}  // namespace subq

#include "mixers/attention_core.inl"
