// Recurrent state kept in bf16 (half the bytes of f32; compute stays f32): conversions, and the SSD
// step on a bf16 state, one head at a time through an f32 tile that stays in L1/L2.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops/ssd.h"

namespace subq::ops {

void Bf16ToF32(const uint16_t* in, float* out, size_t n);
void F32ToBf16(const float* in, uint16_t* out, size_t n);  // round to nearest even

// SsdStep (ops/ssd.h) with state [H, P, N] in bf16; tmp holds P*N floats.
void SsdStepBf16State(const SsdDims& d, const float* x, const float* b, const float* c, const float* loga,
                      uint16_t* state, float* y, float* tmp);

}  // namespace subq::ops
