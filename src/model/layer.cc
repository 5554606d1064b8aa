#include "model/layer.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace subq {

float* Arena::Take(size_t n) {
  size_t off = used_;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(base_ + off);
  off += ((64 - addr % 64) % 64) / sizeof(float);
  if (off + n > cap_) {
    std::fprintf(stderr, "subq: internal error: workspace arena too small (%zu + %zu > %zu floats)\n", off, n, cap_);
    std::abort();
  }
  used_ = off + n;
  return base_ + off;
}

void Mixer::Forward(const float* u, int L, int pos, LayerState& state, float* out) const {
  std::vector<float> scratch(ScratchFloats(L, 1));
  Arena arena(scratch.data(), scratch.size());
  ExecContext ctx{Threads{1}, &arena, nullptr};
  const SeqSlice s{0, L, pos, &state};
  Forward(u, L, std::span<const SeqSlice>(&s, 1), ctx, out);
}

}  // namespace subq
