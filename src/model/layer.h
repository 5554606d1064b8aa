// The pieces a model is built from: per-sequence layer state, mixers (attention or recurrent, in three
// forms), and the scratch they run in. Mixers are const after loading: every buffer a forward pass
// writes lives in the caller's Workspace (model/workspace.h) or in the sequence's own state, so one
// Model serves any number of sequences and threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/tensor_store.h"
#include "model/config.h"
#include "model/mode_schedule.h"
#include "util/status.h"
#include "util/tensor.h"
#include "util/threads.h"

namespace subq {

// Per-sequence state of one layer: a KV cache, or conv + recurrent state. Copyable for snapshots.
class LayerState {
 public:
  virtual ~LayerState() = default;
  virtual std::unique_ptr<LayerState> Clone() const = 0;
  // Bytes of state that this sequence holds now (a KV cache's filled part; recurrent state is constant).
  virtual size_t Bytes() const = 0;
  // Bytes allocated for it (a KV cache is preallocated to its context limit).
  virtual size_t CapacityBytes() const { return Bytes(); }
};

// A bump allocator over a caller-owned float buffer: mixers carve their scratch out of it per call.
// Take() never allocates; running out is a sizing bug (ScratchFloats too small) and aborts loudly.
class Arena {
 public:
  Arena(float* base, size_t cap) : base_(base), cap_(cap) {}
  float* Take(size_t n);  // 16-float (64-byte) aligned
  // Slack to add to a scratch size per Take() for the alignment.
  static constexpr size_t kAlign = 16;
  size_t used() const { return used_; }

 private:
  float* base_;
  size_t cap_, used_ = 0;
};

// What a mixer call may use: the threading context and the scratch arena, and (head ablation, `subq
// heads`) per-head flags of an attention layer: heads whose flag is non-zero contribute nothing to the
// layer's output (their attention output is zeroed before o_proj). Null: every head runs.
struct ExecContext {
  Threads threads;
  Arena* arena;
  const uint8_t* zeroed_heads = nullptr;  // [num_heads] or null
};

// One sequence's part of a batched call: rows [row0, row0 + n) of the stacked [T, dim] activations,
// at positions pos..pos+n-1 of that sequence, whose state for this layer is `state`.
// modes: the sequence's mode schedule (Oryx layers read it; null or empty: the model's default mode).
struct SeqSlice {
  int row0 = 0, n = 0, pos = 0;
  LayerState* state = nullptr;
  const ModeSchedule* modes = nullptr;
};

// A token mixer (SPEC: attention, Mamba-2, Discrete Mamba-2, Mamba-3, Gated DeltaNet).
class Mixer {
 public:
  virtual ~Mixer() = default;
  // State of a fresh sequence; a KV cache holds room for max_context tokens.
  virtual std::unique_ptr<LayerState> NewState(int max_context) const = 0;
  // Scratch floats Forward needs for up to max_rows stacked rows per call with n_threads threads.
  virtual size_t ScratchFloats(int max_rows, int n_threads) const = 0;
  // u: [T, dim] normalised input, the rows of all `seqs` stacked (T = sum of their n); out: [T, dim].
  // Projections run once over all T rows; each sequence's recurrence or attention runs on its own rows
  // (n == 1: the recurrent step; n > 1: the chunked prefill) and advances its state.
  virtual void Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx,
                       float* out) const = 0;
  // One sequence, for tests and tools (allocates its own scratch; the engine uses the batched form).
  void Forward(const float* u, int L, int pos, LayerState& state, float* out) const;
  std::unique_ptr<LayerState> NewState() const { return NewState(kToolContext); }
  static constexpr int kToolContext = 4096;

  // The L x L mixing matrix of every head on input u [L, dim] from a fresh state: [H, L, L].
  virtual Tensor Materialize(const float* u, int L) const = 0;
  virtual int num_heads() const = 0;
  // Bytes of weights one step reads (projections and vectors).
  virtual size_t WeightBytes() const = 0;
};

// Builds the mixer of layer `layer` from tensors named under `prefix` (e.g. "model.layers.3.self_attn.").
// Each mixer file defines its Make* function (mixers/mixers.h); MakeMixer picks by the layer's kind.
Result<std::unique_ptr<Mixer>> MakeMixer(const ModelConfig& cfg, int layer, const TensorStore& store,
                                         const std::string& prefix);

}  // namespace subq
