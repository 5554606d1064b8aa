// Load-time check that a checkpoint's weights are finite: a NaN or Inf weight would otherwise run and
// print garbage text with exit 0.
#pragma once
#include "io/tensor_store.h"
#include "util/status.h"

namespace subq {

// Scans every tensor (f32, f16, bf16) of `store`; the error names the first tensor holding a NaN/Inf,
// the element index and its file.
Status CheckTensorsFinite(const TensorStore& store);

}  // namespace subq
