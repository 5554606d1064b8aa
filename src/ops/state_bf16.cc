#include "ops/state_bf16.h"

#include "ops/weight.h"

namespace subq::ops {

void Bf16ToF32(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = BF16BitsToFloat(in[i]);
}

void F32ToBf16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = FloatToBF16Bits(in[i]);
}

void SsdStepBf16State(const SsdDims& d, const float* x, const float* b, const float* c, const float* loga,
                      uint16_t* state, float* y, float* tmp) {
  const int hpg = d.H / d.G;
  const size_t hs = static_cast<size_t>(d.P) * d.N;
  const SsdDims one{1, d.P, d.N, 1};
  for (int h = 0; h < d.H; ++h) {
    const int g = h / hpg;
    uint16_t* S = state + h * hs;  // [P, N]
    Bf16ToF32(S, tmp, hs);
    SsdStep(one, x + h * d.P, b + g * d.N, c + g * d.N, loga + h, tmp, y + h * d.P);
    F32ToBf16(tmp, S, hs);
  }
}

}  // namespace subq::ops
