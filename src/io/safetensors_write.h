// Writes tensors as a .safetensors file (8-byte header length, JSON header, raw little-endian data),
// atomically: the file is written to "<path>.tmp" and renamed over `path`.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/tensor_store.h"
#include "util/status.h"
#include "util/tensor.h"

namespace subq {

// A tensor to write: `nbytes` bytes at `data` (not copied; must outlive the call) of dtype x shape.
struct TensorBytes {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Tensors are written contiguously, largest element size first (as the safetensors library does), else in
// the given order, so each starts at a multiple of its element size; names must be unique and non-empty. `metadata` goes into the header's "__metadata__" entry (e.g. {"format": "pt"}).
Status WriteSafetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                        const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
// The same for f32 tensors.
Status WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace subq
