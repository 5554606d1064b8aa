// CudaRunner: per-sequence state on the GPU and the forward passes of a CudaModel. Sequences live in
// slots of fixed state pools (conv + SSD state, or bf16 KV caches of `max_context` tokens), allocated
// once. Prefill runs one sequence's prompt; Decode advances any set of slots by one token each with one
// GEMM per projection over the batch. A decode step is captured once per batch-size bucket (1, 2, 4, ...)
// into a CUDA graph whose inputs are fixed device arrays (token, slot, position per row; padding rows go
// to a spare slot), so sequences joining or leaving never force a re-capture.
#pragma once
#include <map>
#include <memory>
#include <vector>

#include "engine_cuda/cuda_model.h"

namespace subq::cuda {

class CudaRunner {
 public:
  // max_rows: most prompt tokens per prefill launch (longer prompts go in pieces).
  CudaRunner(const CudaModel& model, int max_slots, int max_context, int max_rows = 512);
  ~CudaRunner();
  CudaRunner(const CudaRunner&) = delete;
  CudaRunner& operator=(const CudaRunner&) = delete;

  int max_slots() const { return max_slots_; }
  int pos(int slot) const { return pos_[slot]; }
  // Forgets slot's sequence: position 0, zero state.
  void Reset(int slot);
  // Feeds tokens[0..n) to slot; returns the greedy next token; last-token logits to *logits if given.
  int Prefill(int slot, const int* tokens, int n, std::vector<float>* logits = nullptr);
  // One token for each of B rows (slots distinct); next[r] receives row r's greedy next token and
  // logits (if given) its [vocab] logits row.
  void Decode(int B, const int* slots, const int* tokens, int* next, std::vector<float>* logits = nullptr);
  bool use_graphs = true;

  // Benchmarks: random KV caches / states everywhere, and a slot's position set without a prefill
  // (decode cost depends only on the number of cached keys).
  void FillStatesRandom(uint64_t seed);
  void SetPosition(int slot, int pos) { pos_[slot] = pos; }
  size_t StateBytesPerSlot() const { return state_bytes_per_slot_; }

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
  };
  // Runs the model over `rows` rows described by d_tok_/d_slot_/d_pos_; decode (one token per row,
  // batched recurrent steps) or one sequence's prefill (slot `pslot`). Logits of rows [0, lrows) from
  // row offset lrow0 land in d_logits_, their argmax in d_next_.
  void Forward(int rows, bool decode, int pslot, int lrow0, int lrows);
  void Upload(int rows, const int* tok, const int* slot, const int* pos);
  int Bucket(int B) const;

  const CudaModel& m_;
  int max_slots_, max_context_, max_rows_, max_batch_;
  bool has_attention_ = false;  // KV capacity (max_context) bounds positions only then
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  std::vector<int> pos_;
  size_t state_bytes_per_slot_ = 0;
  // Per layer state pools (max_slots + 1 slots; the last takes padding rows).
  std::vector<float*> conv_, ssm_;
  std::vector<bf16*> kc_, vc_;
  // Workspace.
  float *x_ = nullptr, *proj_ = nullptr, *xbc_ = nullptr, *y_ = nullptr, *logits_ = nullptr;
  float *attn_scratch_ = nullptr, *ssd_scratch_ = nullptr;
  bf16 *hb_ = nullptr, *hb2_ = nullptr;
  int *d_io_ = nullptr, *h_io_ = nullptr;  // [tok | slot | pos | next] x max_rows, device and pinned host
  std::vector<void*> allocs_;
  std::map<int, Graph> graphs_;
};

}  // namespace subq::cuda
