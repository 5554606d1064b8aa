// Writes f32 tensors as a .safetensors file (8-byte header length, JSON header, raw little-endian data),
// atomically: the file is written to "<path>.tmp" and renamed over `path`.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "util/status.h"
#include "util/tensor.h"

namespace subq {

// Tensors are written in the given order; names must be unique and non-empty. `metadata` goes into the
// header's "__metadata__" entry (e.g. {"format": "pt"}).
Status WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace subq
