#include "io/random_tensors.h"

#include <cstring>

namespace subq {

Status AddRandomTensor(TensorStore& store, const std::string& name, const std::vector<int64_t>& shape, float stddev,
                       std::mt19937& rng, float mean) {
  std::normal_distribution<float> n(mean, stddev);
  const int64_t numel = Tensor::NumelOf(shape);
  std::vector<uint8_t> bytes(static_cast<size_t>(numel) * 4);
  for (int64_t i = 0; i < numel; ++i) {
    const float v = stddev == 0.0f ? mean : n(rng);
    std::memcpy(bytes.data() + 4 * i, &v, 4);
  }
  TensorInfo t{name, DType::kF32, shape, nullptr, bytes.size(), "random"};
  t.data = store.Own(std::move(bytes));
  return store.Add(std::move(t));
}

}  // namespace subq
