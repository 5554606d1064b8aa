// Per-sequence state of a Mamba-2 / Discrete Mamba-2 layer.
#pragma once
#include <memory>
#include <optional>

#include "mixers/attention.h"
#include "model/layer.h"

namespace subq {

// Conv state [K-1, conv_dim] (the last pre-conv inputs, oldest first) and SSM state [H, P, N], fp32;
// plus, for a head-level hybrid layer, the KV cache of its kept attention heads (the only part that
// grows with the sequence).
class SsmLayerState : public LayerState {
 public:
  SsmLayerState(int conv_rows, int conv_dim, int H, int P, int N) : conv({conv_rows, conv_dim}), ssm({H, P, N}) {}
  std::unique_ptr<LayerState> Clone() const override { return std::make_unique<SsmLayerState>(*this); }
  size_t Bytes() const override {
    return (conv.data.size() + ssm.data.size()) * sizeof(float) + (kv ? kv->Bytes() : 0);
  }
  size_t CapacityBytes() const override {
    return (conv.data.size() + ssm.data.size()) * sizeof(float) + (kv ? kv->CapacityBytes() : 0);
  }
  Tensor conv;  // [K-1, conv_dim]
  Tensor ssm;   // [H, P, N]
  std::optional<KvCache> kv;  // kept attention heads only
};

}  // namespace subq
