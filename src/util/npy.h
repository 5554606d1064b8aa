// Minimal .npy writer for f32 tensors (NumPy format 1.0), used to hand arrays to Python tests.
#pragma once
#include <string>

#include "util/status.h"
#include "util/tensor.h"

namespace subq {
Status WriteNpy(const Tensor& t, const std::string& path);
}  // namespace subq
