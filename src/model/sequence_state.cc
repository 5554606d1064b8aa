#include "model/sequence_state.h"

namespace subq {

SequenceState SequenceState::Copy() const {
  SequenceState s;
  s.pos = pos;
  s.layers.reserve(layers.size());
  for (const auto& l : layers) s.layers.push_back(l->Clone());
  return s;
}

size_t SequenceState::Bytes() const {
  size_t b = 0;
  for (const auto& l : layers) b += l->Bytes();
  return b;
}

}  // namespace subq
