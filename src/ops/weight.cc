#include "ops/weight.h"

#include <cstring>

namespace subq::ops {

const char* WeightTypeName(WeightType t) {
  switch (t) {
    case WeightType::kF32: return "f32";
    case WeightType::kF16: return "f16";
    case WeightType::kBF16: return "bf16";
    case WeightType::kQ8: return "q8";
    case WeightType::kQ4: return "q4";
  }
  return "?";
}

size_t Weight::Bytes() const {
  const size_t n = static_cast<size_t>(rows) * cols;
  switch (type) {
    case WeightType::kF32: return n * 4;
    case WeightType::kF16:
    case WeightType::kBF16: return n * 2;
    case WeightType::kQ8: return n + n / kQuantBlock * 2;
    case WeightType::kQ4: return n / 2 + n / kQuantBlock * 2;
  }
  return 0;
}

float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float BF16BitsToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToBF16Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((b >> 16) | 0x40);  // NaN stays NaN
  b += 0x7fff + ((b >> 16) & 1);
  return static_cast<uint16_t>(b >> 16);
}

uint16_t FloatToHalfBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000;
  const uint32_t absb = b & 0x7fffffffu;
  if (absb > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00);   // NaN
  if (absb >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // overflow -> inf
  if (absb < 0x38800000u) {  // subnormal or zero in half
    float a;
    std::memcpy(&a, &absb, 4);
    // a * 2^24 rounded to nearest even gives the subnormal mantissa.
    const float scaled = a * 16777216.0f;
    uint32_t m = static_cast<uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t e = ((absb >> 23) - 127 + 15) << 10;
  uint32_t mant = absb & 0x7fffff;
  uint32_t h = e | (mant >> 13);
  const uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

void Weight::DequantizeRow(int64_t r, float* out) const {
  const size_t off = static_cast<size_t>(r) * cols;
  switch (type) {
    case WeightType::kF32:
      std::memcpy(out, static_cast<const float*>(data) + off, cols * 4);
      return;
    case WeightType::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + off;
      for (int64_t c = 0; c < cols; ++c) out[c] = HalfBitsToFloat(p[c]);
      return;
    }
    case WeightType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + off;
      for (int64_t c = 0; c < cols; ++c) out[c] = BF16BitsToFloat(p[c]);
      return;
    }
    case WeightType::kQ8: {
      const int8_t* p = static_cast<const int8_t*>(data) + off;
      const uint16_t* s = scales + off / kQuantBlock;
      for (int64_t c = 0; c < cols; ++c) out[c] = p[c] * HalfBitsToFloat(s[c / kQuantBlock]);
      return;
    }
    case WeightType::kQ4: {
      const uint8_t* p = static_cast<const uint8_t*>(data) + off / 2;
      const uint16_t* s = scales + off / kQuantBlock;
      for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
        const float d = HalfBitsToFloat(s[b]);
        const uint8_t* q = p + b * 16;
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = (static_cast<int>(q[j] & 0x0f) - 8) * d;
          out[b * 32 + 16 + j] = (static_cast<int>(q[j] >> 4) - 8) * d;
        }
      }
      return;
    }
  }
}

}  // namespace subq::ops
