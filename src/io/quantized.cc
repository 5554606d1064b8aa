#include "io/quantized.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ops/weight.h"

namespace subq {

const char* QuantTypeName(QuantType t) {
  switch (t) {
    case QuantType::kNone: return "none";
    case QuantType::kQ8: return "q8";
    case QuantType::kQ4: return "q4";
  }
  return "?";
}

bool IsScaleOfQuantized(const TensorStore& store, const TensorInfo& t) {
  constexpr size_t n = sizeof("_scale") - 1;
  if (t.name.size() <= n || t.name.compare(t.name.size() - n, n, "_scale") != 0) return false;
  const TensorInfo* base = store.Find(t.name.substr(0, t.name.size() - n));
  return base != nullptr && (base->dtype == DType::kI8 || base->dtype == DType::kU8);
}

Result<QuantType> ReadQuantizationEntry(const std::string& config_path) {
  std::ifstream in(config_path, std::ios::binary);
  if (!in) return Errorf("{}: cannot open", config_path);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    return Errorf("{}: malformed JSON: {}", config_path, e.what());
  }
  auto q = j.is_object() ? j.find("quantization") : j.end();
  if (q == j.end() || q->is_null()) return QuantType::kNone;
  auto field = [&](const char* key) { return q->is_object() && q->contains(key) ? (*q)[key] : nlohmann::json(); };
  const nlohmann::json type = field("type"), block = field("block");
  if (!q->is_object() || !type.is_string())
    return Errorf("{}: field 'quantization' must be {{\"type\": \"q8\" | \"q4\", \"block\": 32}}", config_path);
  QuantType t;
  if (type == "q8") {
    t = QuantType::kQ8;
  } else if (type == "q4") {
    t = QuantType::kQ4;
  } else {
    return Errorf("{}: field 'quantization.type' = {} is not supported (subq reads \"q8\" and \"q4\")", config_path,
                  type.dump());
  }
  if (!block.is_number_integer() || block.get<int64_t>() != ops::kQuantBlock)
    return Errorf("{}: field 'quantization.block' = {} is not supported (subq's quantized layout uses blocks of {})",
                  config_path, block.is_null() ? "missing" : block.dump(), ops::kQuantBlock);
  return t;
}

Status ValidateQuantizedTensors(const TensorStore& store, QuantType want, const std::string& config_path) {
  for (const TensorInfo& t : store.tensors()) {
    if (t.dtype != DType::kI8 && t.dtype != DType::kU8) continue;
    const QuantType got = t.dtype == DType::kI8 ? QuantType::kQ8 : QuantType::kQ4;
    if (want == QuantType::kNone)
      return Errorf("{}: tensor '{}' is {} (a {} matrix) but {} has no \"quantization\" entry", t.file, t.name,
                    DTypeName(t.dtype), QuantTypeName(got), config_path);
    if (got != want)
      return Errorf("{}: tensor '{}' is {} ({}) but {} says the model is {}", t.file, t.name, DTypeName(t.dtype),
                    QuantTypeName(got), config_path, QuantTypeName(want));
    const std::vector<int64_t> shape = LogicalShape(t);
    if (shape.size() != 2)
      return Errorf("{}: quantized tensor '{}' has shape {}; quantized tensors must be matrices", t.file, t.name,
                    ShapeStr(t.shape));
    SUBQ_RETURN_IF_ERROR(store.LoadWeight(t.name, shape[0], shape[1]).status());
  }
  return Status::Ok();
}

void QuantizeRowQ8(const float* x, int64_t cols, int8_t* q, uint16_t* scales) {
  for (int64_t b = 0; b < cols / ops::kQuantBlock; ++b) {
    const float* v = x + b * ops::kQuantBlock;
    float amax = 0.0f;
    for (int j = 0; j < ops::kQuantBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    scales[b] = ops::FloatToHalfBits(d);
    for (int j = 0; j < ops::kQuantBlock; ++j) q[b * ops::kQuantBlock + j] = static_cast<int8_t>(std::round(v[j] * id));
  }
}

void QuantizeRowQ4(const float* x, int64_t cols, uint8_t* q, uint16_t* scales) {
  constexpr int kHalf = ops::kQuantBlock / 2;
  for (int64_t b = 0; b < cols / ops::kQuantBlock; ++b) {
    const float* v = x + b * ops::kQuantBlock;
    float amax = 0.0f, m = 0.0f;
    for (int j = 0; j < ops::kQuantBlock; ++j)
      if (std::fabs(v[j]) > amax) amax = std::fabs(v[j]), m = v[j];
    const float d = m / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    scales[b] = ops::FloatToHalfBits(d);
    // x * id lies in [-8, 8]: + 8.5 truncated is round-half-up of x / d + 8 (llama.cpp's exact rule).
    auto nib = [&](float xv) { return static_cast<uint8_t>(std::min(15, static_cast<int>(xv * id + 8.5f))); };
    for (int j = 0; j < kHalf; ++j) q[b * kHalf + j] = nib(v[j]) | static_cast<uint8_t>(nib(v[kHalf + j]) << 4);
  }
}

}  // namespace subq
