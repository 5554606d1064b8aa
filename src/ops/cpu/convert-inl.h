// Per-target conversion of weight rows (any WeightType, layouts in ops/weight.h) to f32 vectors.
// Included once per Highway target by the kernels that read weights (linear.cc).
#if defined(SUBQ_OPS_CPU_CONVERT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SUBQ_OPS_CPU_CONVERT_INL_H_
#undef SUBQ_OPS_CPU_CONVERT_INL_H_
#else
#define SUBQ_OPS_CPU_CONVERT_INL_H_
#endif

#include <algorithm>
#include <cstdint>

#include "hwy/highway.h"
#include "ops/weight.h"

HWY_BEFORE_NAMESPACE();
namespace subq::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// V f32 lanes from V halves / bfloats at p (no alignment needed).
HWY_INLINE VF LoadF16(DF df, const uint16_t* p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}
HWY_INLINE VF LoadBF16(DF df, const uint16_t* p) {
  const hn::Rebind<hwy::bfloat16_t, DF> db;
  return hn::PromoteTo(df, hn::LoadU(db, reinterpret_cast<const hwy::bfloat16_t*>(p)));
}
// V int8 values at p as f32 (unscaled).
HWY_INLINE VF LoadQ8(DF df, const int8_t* p) {
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<int8_t, DF> d8;
  return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, p)));
}
// V bytes at p of a Q4 block: lo gets the low nibbles, hi the high ones, as f32 0..15 (no -8 offset).
HWY_INLINE void LoadQ4Nibbles(DF df, const uint8_t* p, VF& lo, VF& hi) {
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint8_t, DF> d8;
  const auto v = hn::BitCast(di, hn::PromoteTo(hn::RebindToUnsigned<DF>(), hn::LoadU(d8, p)));  // [V] bytes as i32
  lo = hn::ConvertTo(df, hn::And(v, hn::Set(di, 15)));
  hi = hn::ConvertTo(df, hn::ShiftRight<4>(v));
}

// n f16 scales at s as f32 (vector conversion; one scalar conversion per block would cost about as
// much as converting the block's values).
HWY_INLINE void ScalesToF32(DF df, const uint16_t* HWY_RESTRICT s, int64_t n, float* HWY_RESTRICT out) {
  const int64_t V = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + V <= n; i += V) hn::StoreU(LoadF16(df, s + i), df, out + i);
  for (; i < n; ++i) out[i] = HalfBitsToFloat(s[i]);
}

// out[0, n) = row r of w, columns [k0, k0 + n), as f32. Quantized types need k0 and n multiples of 32.
HWY_INLINE void ConvertRow(const Weight& w, int64_t r, int64_t k0, int64_t n, float* HWY_RESTRICT out) {
  const DF df;
  const int64_t V = static_cast<int64_t>(hn::Lanes(df));
  const size_t off = static_cast<size_t>(r) * w.cols + k0;
  constexpr int64_t kChunk = 64;  // blocks whose scales are converted at once
  HWY_ALIGN float sc[kChunk];
  int64_t k = 0;
  switch (w.type) {
    case WeightType::kF32: {
      const float* p = static_cast<const float*>(w.data) + off;
      for (; k + V <= n; k += V) hn::StoreU(hn::LoadU(df, p + k), df, out + k);
      for (; k < n; ++k) out[k] = p[k];
      return;
    }
    case WeightType::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + off;
      for (; k + V <= n; k += V) hn::StoreU(LoadF16(df, p + k), df, out + k);
      for (; k < n; ++k) out[k] = HalfBitsToFloat(p[k]);
      return;
    }
    case WeightType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + off;
      for (; k + V <= n; k += V) hn::StoreU(LoadBF16(df, p + k), df, out + k);
      for (; k < n; ++k) out[k] = BF16BitsToFloat(p[k]);
      return;
    }
    case WeightType::kQ8: {
      const int8_t* p = static_cast<const int8_t*>(w.data) + off;
      for (int64_t b = 0; b < n / kQuantBlock; ++b) {
        if (b % kChunk == 0) ScalesToF32(df, w.scales + off / kQuantBlock + b, std::min(kChunk, n / kQuantBlock - b), sc);
        const VF d = hn::Set(df, sc[b % kChunk]);
        for (int64_t j = 0; j < kQuantBlock; j += V)
          hn::StoreU(hn::Mul(d, LoadQ8(df, p + b * kQuantBlock + j)), df, out + b * kQuantBlock + j);
      }
      return;
    }
    case WeightType::kQ4: {
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + off / 2;
      const VF eight = hn::Set(df, 8.0f);
      for (int64_t b = 0; b < n / kQuantBlock; ++b) {
        if (b % kChunk == 0) ScalesToF32(df, w.scales + off / kQuantBlock + b, std::min(kChunk, n / kQuantBlock - b), sc);
        const VF d = hn::Set(df, sc[b % kChunk]);
        for (int64_t j = 0; j < kQuantBlock / 2; j += V) {
          VF lo, hi;
          LoadQ4Nibbles(df, p + b * 16 + j, lo, hi);
          lo = hn::Sub(lo, eight);
          hi = hn::Sub(hi, eight);
          hn::StoreU(hn::Mul(d, lo), df, out + b * kQuantBlock + j);
          hn::StoreU(hn::Mul(d, hi), df, out + b * kQuantBlock + 16 + j);
        }
      }
      return;
    }
  }
}

}  // namespace subq::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();
#endif
