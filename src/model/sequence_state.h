// Per-sequence state: one LayerState per layer (KV cache or recurrent + conv state), the position and
// the context limit its KV caches were sized for. Snapshot/Restore are exact at any token boundary.
#pragma once
#include <climits>
#include <memory>
#include <vector>

#include "model/layer.h"
#include "model/mode_schedule.h"

namespace subq {

class SequenceState {
 public:
  SequenceState() = default;
  SequenceState(SequenceState&&) = default;
  SequenceState& operator=(SequenceState&&) = default;

  std::vector<std::unique_ptr<LayerState>> layers;
  int pos = 0;               // tokens consumed so far
  int max_context = INT_MAX; // tokens it may hold (KV capacity); Forward refuses more
  const void* owner = nullptr;  // the Model it belongs to
  // Which mode Oryx layers run at each position (model/mode_schedule.h); empty: the model's default.
  ModeSchedule modes;

  SequenceState Copy() const;
  SequenceState Snapshot() const { return Copy(); }
  // Restores a snapshot (exact: the next token sees the state the snapshot saw).
  void Restore(const SequenceState& snap);
  size_t Bytes() const;          // filled state bytes
  size_t CapacityBytes() const;  // allocated state bytes
};

}  // namespace subq
