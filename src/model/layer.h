// The pieces a model is built from: per-sequence layer state, mixers (attention or recurrent, in three
// forms), and the residual block around them.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "io/tensor_store.h"
#include "model/config.h"
#include "util/status.h"
#include "util/tensor.h"

namespace subq {

// Per-sequence state of one layer: a KV cache, or conv + recurrent state. Copyable for snapshots.
class LayerState {
 public:
  virtual ~LayerState() = default;
  virtual std::unique_ptr<LayerState> Clone() const = 0;
  // Bytes of state that this sequence holds now (KV cache grows with tokens; recurrent state does not).
  virtual size_t Bytes() const = 0;
};

// A token mixer (SPEC: attention, Mamba-2, Discrete Mamba-2, Mamba-3, Gated DeltaNet).
class Mixer {
 public:
  virtual ~Mixer() = default;
  virtual std::unique_ptr<LayerState> NewState() const = 0;
  // u: [L, dim] normalised input for positions pos..pos+L-1; out: [L, dim]. Advances `state`.
  // L == 1 runs the recurrent step; L > 1 the chunked prefill (chunk length from the config).
  virtual void Forward(const float* u, int L, int pos, LayerState& state, float* out) = 0;
  // The L x L mixing matrix of every head on input u [L, dim] from a fresh state: [H, L, L].
  virtual Tensor Materialize(const float* u, int L) const = 0;
  virtual int num_heads() const = 0;
};

// Builds the mixer of layer `layer` from tensors named under `prefix` (e.g. "model.layers.3.self_attn.").
// Each mixer file defines its Make* function (mixers/mixers.h); MakeMixer picks by the layer's kind.
Result<std::unique_ptr<Mixer>> MakeMixer(const ModelConfig& cfg, int layer, const TensorStore& store,
                                         const std::string& prefix);

}  // namespace subq
