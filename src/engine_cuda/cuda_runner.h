// CudaRunner: per-sequence state on the GPU and the forward passes of a CudaModel. Sequences live in
// slots of fixed state pools (conv + recurrent state per layer kind, bf16 KV caches of `max_context`
// tokens for attention layers and kept heads), allocated once. Prefill runs one sequence's prompt; Decode
// advances any set of slots by one token each with one GEMM per projection over the batch. A decode step
// is captured once per batch-size bucket (1, 2, 4, ...) into a CUDA graph whose inputs are fixed device
// arrays (token, slot, position and sampling parameters per row; padding rows go to a spare slot), so
// sequences joining or leaving never force a re-capture. Next tokens are chosen on the device: greedy, or
// each slot's temperature / top-k / top-p with uniform draws from that slot's seeded host stream (the
// same stream model/sampler.h draws from).
#pragma once
#include <map>
#include <memory>
#include <vector>

#include "engine_cuda/cuda_model.h"
#include "model/sampler.h"

namespace subq::cuda {

class CudaRunner {
 public:
  // max_rows: most prompt tokens per prefill launch (longer prompts go in pieces).
  CudaRunner(const CudaModel& model, int max_slots, int max_context, int max_rows = 512);
  ~CudaRunner();
  CudaRunner(const CudaRunner&) = delete;
  CudaRunner& operator=(const CudaRunner&) = delete;

  int max_slots() const { return max_slots_; }
  int max_context() const { return max_context_; }
  bool has_attention() const { return has_attention_; }
  int pos(int slot) const { return pos_[slot]; }
  // Forgets slot's sequence: position 0, zero state, greedy sampling.
  void Reset(int slot);
  // The slot's state and position become a copy of `from`'s.
  void Copy(int from, int to);
  // How slot's next tokens are chosen (temperature 0: greedy). The config must be valid (ValidateSamplerConfig).
  void SetSampler(int slot, const SamplerConfig& sc);
  // Snapshots of a slot's state (recurrent state + the filled part of its KV caches, cuda_snapshot.cc) in
  // device memory, allocated stream-ordered; data is nullptr when the device has no memory left for one.
  struct SlotSnapshot {
    void* data = nullptr;
    size_t bytes = 0;
    int pos = 0;
  };
  SlotSnapshot Snapshot(int slot);
  // slot's state and position become the snapshot's (taken from any slot of this runner).
  void Restore(const SlotSnapshot& snap, int slot);
  void Free(SlotSnapshot& snap);
  // Feeds tokens[0..n) to slot; returns the next token; last-token logits to *logits if given.
  int Prefill(int slot, const int* tokens, int n, std::vector<float>* logits = nullptr);
  // Feeds tokens[0..n) to slot and writes every token's logits to logits [n, vocab] (host).
  void PrefillAllLogits(int slot, const int* tokens, int n, float* logits);
  // One token for each of B rows (slots distinct); next[r] receives row r's next token and logits (if
  // given) its [vocab] logits row.
  void Decode(int B, const int* slots, const int* tokens, int* next, std::vector<float>* logits = nullptr);
  bool use_graphs = true;

  // Benchmarks: random KV caches / states everywhere, and a slot's position set without a prefill
  // (decode cost depends only on the number of cached keys).
  void FillStatesRandom(uint64_t seed);
  void SetPosition(int slot, int pos) { pos_[slot] = pos; }
  size_t StateBytesPerSlot() const { return state_bytes_per_slot_; }
  // Bytes a slot holds now: recurrent state plus the filled part of its KV caches.
  size_t StateBytesUsed(int slot) const;
  // Bytes each slot of a runner of `max_context` tokens allocates (recurrent state + KV capacity).
  static size_t SlotBytes(const CudaModel& model, int max_context);
  // Device bytes of activations, logits and scratch (not weights, not states).
  size_t WorkspaceBytes() const { return workspace_bytes_; }

 private:
  // Per-layer state pools, slots + 1 of each (the last takes padding rows): f[i] holds per[i] floats
  // per slot (SSD: conv, ssm; Mamba-3: phase, ssm, k_last, x_last; GDN: conv, S); kc/vc the KV cache of
  // attention layers or kept heads (kv_width = heads x head dim).
  struct Pools {
    float* f[4] = {};
    size_t per[4] = {};
    bf16 *kc = nullptr, *vc = nullptr;
    int kv_width = 0;
  };
  // Each layer's pool shapes (per[], kv_width; no memory).
  static std::vector<Pools> Shapes(const CudaModel& model);
  struct Graph {
    cudaGraphExec_t exec = nullptr;
  };
  // Runs the model over `rows` rows described by the io arrays; decode (one token per row, batched
  // recurrent steps) or one sequence's prefill (slot `pslot`). Logits of rows [0, lrows) from row offset
  // lrow0 land in `logits` (max(lrows) rows of vocab), their next tokens in the io's next array.
  void Forward(int rows, bool decode, int pslot, int lrow0, int lrows, float* logits);
  void AttentionLayer(const DeviceLayer& L, const Pools& pl, int rows);
  void SsdLayer(const DeviceLayer& L, const Pools& pl, int rows, bool decode, int pslot);
  void Mamba3Layer(const DeviceLayer& L, const Pools& pl, int rows, bool decode);
  void GdnLayer(const DeviceLayer& L, const Pools& pl, int rows, bool decode, int pslot);
  // Rows' tokens, slots, positions and sampling parameters (from each slot's sampler) to the device.
  void Upload(int rows, const int* tok, const int* slot, const int* pos);
  int Bucket(int B) const;
  int Ld(const DeviceLayer& L) const { return (L.proj_rows + 3) / 4 * 4; }  // proj row stride
  int IoRows() const { return std::max(max_rows_, max_batch_); }

  const CudaModel& m_;
  int max_slots_, max_context_, max_rows_, max_batch_;
  bool has_attention_ = false;  // KV capacity (max_context) bounds positions only then
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  std::vector<int> pos_;
  std::vector<SamplerConfig> sampler_cfg_;
  std::vector<Sampler> sampler_;  // per slot: the uniform stream
  size_t state_bytes_per_slot_ = 0, workspace_bytes_ = 0;
  std::vector<Pools> pools_;
  // Workspace.
  float *x_ = nullptr, *proj_ = nullptr, *xbc_ = nullptr, *y_ = nullptr, *logits_ = nullptr;
  float *all_logits_ = nullptr;  // [max_rows, vocab], allocated by the first PrefillAllLogits
  float *attn_scratch_ = nullptr, *ssd_scratch_ = nullptr, *m3_scratch_ = nullptr;
  bf16 *hb_ = nullptr, *hb2_ = nullptr;
  // io, device and pinned host: ints [tok | slot | pos | next | top_k] x IoRows, floats [temp | top_p | u].
  int *d_io_ = nullptr, *h_io_ = nullptr;
  float *d_fio_ = nullptr, *h_fio_ = nullptr;
  std::vector<void*> allocs_;
  std::map<int, Graph> graphs_;
};

}  // namespace subq::cuda
