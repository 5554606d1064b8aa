// Shared helpers of the ops tests: random data, weights of every type, tolerance checks.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <random>
#include <vector>

#include "hwy/targets.h"
#include "ops/weight.h"

namespace subq::ops::testing {

// Runs fn once per SIMD target compiled in and supported here (AVX-512, AVX2, SSE4, scalar...),
// so every dispatched path is checked, not only the best one; reports the target on failure.
template <class Fn>
void ForEachTarget(const Fn& fn) {
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(t);
    SCOPED_TRACE(hwy::TargetName(t));
    fn();
  }
  hwy::SetSupportedTargetsForTest(0);
}

inline std::vector<float> Random(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(g);
  return v;
}

// A [rows, cols] weight of type t made from random values; owns its bytes.
struct OwnedWeight {
  std::vector<uint8_t> bytes;
  std::vector<uint16_t> scales;
  Weight w;
};

inline OwnedWeight MakeWeight(WeightType t, int64_t rows, int64_t cols, uint32_t seed) {
  const std::vector<float> f = Random(static_cast<size_t>(rows * cols), seed);
  OwnedWeight o;
  const size_t n = f.size();
  if (t == WeightType::kF32) {
    o.bytes.resize(n * 4);
    std::memcpy(o.bytes.data(), f.data(), n * 4);
  } else if (t == WeightType::kF16 || t == WeightType::kBF16) {
    o.bytes.resize(n * 2);
    auto* p = reinterpret_cast<uint16_t*>(o.bytes.data());
    for (size_t i = 0; i < n; ++i) p[i] = t == WeightType::kF16 ? FloatToHalfBits(f[i]) : FloatToBF16Bits(f[i]);
  } else {  // symmetric per-block quantisation, as `subq quantize` writes it
    const int64_t nb = cols / kQuantBlock;
    o.bytes.resize(t == WeightType::kQ8 ? n : n / 2);
    o.scales.resize(static_cast<size_t>(rows * nb));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const float* v = &f[r * cols + b * kQuantBlock];
        float mx = 0.0f;
        for (int j = 0; j < kQuantBlock; ++j) mx = std::max(mx, std::fabs(v[j]));
        const float d = mx / (t == WeightType::kQ8 ? 127.0f : 8.0f);
        o.scales[r * nb + b] = FloatToHalfBits(d);
        const float id = d == 0.0f ? 0.0f : 1.0f / d;
        for (int j = 0; j < kQuantBlock; ++j) {
          const size_t c = r * cols + b * kQuantBlock + j;
          if (t == WeightType::kQ8) {
            o.bytes[c] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(v[j] * id)));
          } else {
            const int q = std::clamp(static_cast<int>(std::lround(v[j] * id)) + 8, 0, 15);
            uint8_t& byte = o.bytes[(r * cols + b * kQuantBlock) / 2 + (j % 16)];
            byte = j < 16 ? static_cast<uint8_t>((byte & 0xf0) | q) : static_cast<uint8_t>((byte & 0x0f) | (q << 4));
          }
        }
      }
  }
  o.w = Weight{t, o.bytes.data(), o.scales.empty() ? nullptr : o.scales.data(), rows, cols};
  return o;
}

// |got - want| <= rel * scale + abs elementwise, scale[i] a magnitude of the terms summed into want[i].
inline void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>& scale,
                       double rel, double abs, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(got[i] - want[i]), rel * scale[i] + abs) << what << " at " << i << ": " << got[i] << " vs " << want[i];
}

}  // namespace subq::ops::testing
