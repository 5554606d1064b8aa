// Random tensors in a TensorStore, for tests and benchmarks that need a model without a checkpoint.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "io/tensor_store.h"

namespace subq {

// Adds `name` with N(mean, stddev) entries (f32, owned by the store).
Status AddRandomTensor(TensorStore& store, const std::string& name, const std::vector<int64_t>& shape,
                       float stddev, std::mt19937& rng, float mean = 0.0f);

}  // namespace subq
