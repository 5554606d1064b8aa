#include "io/tensor_check.h"

#include <cmath>
#include <cstring>

namespace subq {
namespace {

// Index of the first non-finite element, or -1. Half formats are non-finite exactly when all exponent
// bits are set, so they are checked on the bits.
int64_t FirstNonFinite(const TensorInfo& t) {
  if (t.dtype == DType::kI8 || t.dtype == DType::kU8) return -1;  // quantized values are integers
  const size_t n = t.nbytes / DTypeSize(t.dtype);
  if (t.dtype == DType::kF32) {
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, t.data + 4 * i, 4);
      if (!std::isfinite(v)) return static_cast<int64_t>(i);
    }
    return -1;
  }
  // F16 (also the scales of quantized matrices) or BF16.
  const uint16_t exp_mask = t.dtype == DType::kF16 ? 0x7C00 : 0x7F80;
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, t.data + 2 * i, 2);
    if ((h & exp_mask) == exp_mask) return static_cast<int64_t>(i);
  }
  return -1;
}

}  // namespace

Status CheckTensorsFinite(const TensorStore& store) {
  for (const TensorInfo& t : store.tensors()) {
    const int64_t bad = FirstNonFinite(t);
    if (bad >= 0)
      return Errorf("{}: tensor {} holds a non-finite value (NaN or Inf) at element {}; the checkpoint is damaged "
                    "(--no-check-weights loads it anyway)",
                    t.file, t.name, bad);
  }
  return Status::Ok();
}

}  // namespace subq
