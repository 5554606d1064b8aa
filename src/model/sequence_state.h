// Per-sequence state: one LayerState per layer (KV cache or recurrent + conv state) and the position.
// Snapshot/Restore are exact at any token boundary.
#pragma once
#include <memory>
#include <vector>

#include "model/layer.h"

namespace subq {

class SequenceState {
 public:
  SequenceState() = default;
  SequenceState(SequenceState&&) = default;
  SequenceState& operator=(SequenceState&&) = default;

  std::vector<std::unique_ptr<LayerState>> layers;
  int pos = 0;  // tokens consumed so far

  SequenceState Copy() const;
  SequenceState Snapshot() const { return Copy(); }
  void Restore(const SequenceState& snap) { *this = snap.Copy(); }
  size_t Bytes() const;
};

}  // namespace subq
