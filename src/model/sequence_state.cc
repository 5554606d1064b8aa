#include "model/sequence_state.h"

namespace subq {

SequenceState SequenceState::Copy() const {
  SequenceState s;
  s.pos = pos;
  s.max_context = max_context;
  s.owner = owner;
  s.modes = modes;
  s.layers.reserve(layers.size());
  for (const auto& l : layers) s.layers.push_back(l->Clone());
  return s;
}

void SequenceState::Restore(const SequenceState& snap) { *this = snap.Copy(); }

size_t SequenceState::Bytes() const {
  size_t b = 0;
  for (const auto& l : layers) b += l->Bytes();
  return b;
}

size_t SequenceState::CapacityBytes() const {
  size_t b = 0;
  for (const auto& l : layers) b += l->CapacityBytes();
  return b;
}

}  // namespace subq
