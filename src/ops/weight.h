// Weight: a read-only typed view of a [rows, cols] matrix in the layout of a torch Linear weight
// [out, in] (row r = output r). Views point into the memory-mapped checkpoint (or into a buffer the
// TensorStore owns); f16/bf16/quantized files are never expanded to f32.
//
// Layouts (cols % 32 == 0 for the quantized types; one f16 scale per block of 32 columns of a row):
//   kF32   float    [rows, cols]
//   kF16   uint16   [rows, cols]  IEEE half bits
//   kBF16  uint16   [rows, cols]  bfloat16 bits
//   kQ8    int8     [rows, cols]                 value = q * scale[r, c/32]
//   kQ4    uint8    [rows, cols/2]; in block b of a row (16 bytes), byte j holds column 32b+j in its
//                   low nibble and column 32b+16+j in its high nibble (GGUF Q4_0 order);
//                   value = (nibble - 8) * scale[r, c/32]
//   scales (kQ8, kQ4): f16 bits [rows, cols/32]
#pragma once
#include <cstddef>
#include <cstdint>

namespace subq::ops {

enum class WeightType { kF32, kF16, kBF16, kQ8, kQ4 };
inline constexpr int kQuantBlock = 32;
const char* WeightTypeName(WeightType t);

struct Weight {
  WeightType type = WeightType::kF32;
  const void* data = nullptr;
  const uint16_t* scales = nullptr;  // kQ8 / kQ4 only
  int64_t rows = 0, cols = 0;

  static Weight F32(const float* p, int64_t rows, int64_t cols) { return {WeightType::kF32, p, nullptr, rows, cols}; }
  bool empty() const { return data == nullptr; }
  // Bytes one pass over the matrix reads (values + scales): the decode roofline's numerator.
  size_t Bytes() const;
  // Row r as f32 (embedding lookup, tests).
  void DequantizeRow(int64_t r, float* out) const;
};

float HalfBitsToFloat(uint16_t h);
float BF16BitsToFloat(uint16_t h);
uint16_t FloatToHalfBits(float f);  // round to nearest even
uint16_t FloatToBF16Bits(float f);  // round to nearest even

}  // namespace subq::ops
