// Quantized weights in an HF folder (written by `subq quantize`, read by ReadHfFolder).
//
// A quantized matrix `X.weight` [rows, cols] (cols % 32 == 0) is two safetensors tensors:
//   q8:  `X.weight`        I8  [rows, cols]      value q
//   q4:  `X.weight`        U8  [rows, cols / 2]  block b of a row is 16 bytes; byte j holds column 32b + j in
//                                               its low nibble and column 32b + 16 + j in its high nibble
//                                               (GGUF Q4_0 order), nibble n stands for q = n - 8
//   both: `X.weight_scale` F16 [rows, cols / 32]  one scale d per block of 32 columns of a row
// and the weight is q * d (the layouts of ops/weight.h, so LoadWeight returns views into the file).
// config.json says  "quantization": {"type": "q8" | "q4", "block": 32}  (the header's __metadata__ carries
// "quantization" too). Everything else (norms, A_log, dt_bias, D, conv weights, biases, and matrices whose
// cols are not a multiple of 32) stays F32/F16/BF16.
//
// Rules (QuantizeRow*): q8: d = absmax / 127, q = round(x / d); q4: llama.cpp's Q4_0, d = m / -8 where m is
// the value of largest magnitude (with its sign), q = clamp(round(x / d) + 8, 0, 15) - 8. A zero block has
// d = 0 and q = 0. d is stored as f16; q is computed from the f32 d before rounding it, as llama.cpp does.
#pragma once
#include <cstdint>
#include <string>

#include "io/tensor_store.h"
#include "util/status.h"

namespace subq {

enum class QuantType { kNone, kQ8, kQ4 };
const char* QuantTypeName(QuantType t);

// The name of the scale tensor of quantized matrix `name`.
inline std::string ScaleName(const std::string& name) { return name + "_scale"; }
// True for the `_scale` tensor of a quantized matrix in `store` (not a tensor of the model itself).
bool IsScaleOfQuantized(const TensorStore& store, const TensorInfo& t);

// Reads "quantization" from the config.json at `config_path` (absent: kNone). Types other than q8/q4 and
// blocks other than 32 are errors naming the file.
Result<QuantType> ReadQuantizationEntry(const std::string& config_path);
// Checks every I8/U8 tensor of `store` against the layout above: a 2-D matrix of the type `want` that
// `config_path` declares (kNone: no quantized tensor may appear) with a well-formed scale tensor.
Status ValidateQuantizedTensors(const TensorStore& store, QuantType want, const std::string& config_path);

// One row of `cols` values (cols % 32 == 0) into q (cols int8, or cols/2 packed bytes for q4) and
// cols/32 f16 scales.
void QuantizeRowQ8(const float* x, int64_t cols, int8_t* q, uint16_t* scales);
void QuantizeRowQ4(const float* x, int64_t cols, uint8_t* q, uint16_t* scales);

}  // namespace subq
