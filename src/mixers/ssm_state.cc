#include "mixers/ssm_state.h"

#include "ops/state_bf16.h"

namespace subq {

void AddSkip(int n, int H, int P, const float* D, const float* x, int ldx, float* y, int ldy) {
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < H; ++h) {
      const float d = D[h];
      const float* xr = x + static_cast<size_t>(t) * ldx + h * P;
      float* yr = y + static_cast<size_t>(t) * ldy + h * P;
      for (int p = 0; p < P; ++p) yr[p] += d * xr[p];
    }
}

size_t SsmScanScratchFloats(const Threads& th, const ops::SsdDims& d) {
  auto round16 = [](size_t n) { return (n + 15) / 16 * 16; };  // keeps per-thread slices 64-byte aligned
  return round16(static_cast<size_t>(d.H) * d.P * d.N) + round16(ops::SsdScratchFloats(th, d, kCpuScanChunk)) + Arena::kAlign;
}

void SsmScan(const Threads& th, const ops::SsdDims& d, int n, const float* x, int ldx, const float* b, const float* c, int ldbc,
             const float* loga, SsmLayerState& st, float* y, int ldy, float* scratch) {
  const size_t state_floats = static_cast<size_t>(d.H) * d.P * d.N;
  float* scan = scratch + (state_floats + 15) / 16 * 16;  // keeps the scan's doubles aligned
  if (!st.bf16()) {
    if (n == 1) {
      ops::SsdStep(th, d, x, b, c, loga, st.ssm.ptr(), y);
    } else {
      ops::SsdChunkedScan(th, d, n, kCpuScanChunk, x, ldx, b, c, ldbc, loga, st.ssm.ptr(), y, ldy, scan);
    }
    return;
  }
  if (n == 1) {
    ops::SsdStepBf16State(d, x, b, c, loga, st.ssm_bf16.data(), y, scratch);
    return;
  }
  ops::Bf16ToF32(st.ssm_bf16.data(), scratch, state_floats);
  ops::SsdChunkedScan(th, d, n, kCpuScanChunk, x, ldx, b, c, ldbc, loga, scratch, y, ldy, scan);
  ops::F32ToBf16(scratch, st.ssm_bf16.data(), state_floats);
}

}  // namespace subq
