// Per-target conversion of weight rows (any WeightType, layouts in ops/weight.h) to f32 vectors.
// Included once per Highway target by the kernels that read weights (linear.cc).
#if defined(SUBQ_OPS_CPU_CONVERT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SUBQ_OPS_CPU_CONVERT_INL_H_
#undef SUBQ_OPS_CPU_CONVERT_INL_H_
#else
#define SUBQ_OPS_CPU_CONVERT_INL_H_
#endif

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
// V bytes at p of a Q4 block: lo gets (low nibble - 8), hi gets (high nibble - 8), unscaled.
HWY_INLINE void LoadQ4(DF df, const uint8_t* p, VF& lo, VF& hi) {
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint8_t, DF> d8;
  const auto v = hn::BitCast(di, hn::PromoteTo(hn::RebindToUnsigned<DF>(), hn::LoadU(d8, p)));  // [V] bytes as i32
  const auto eight = hn::Set(di, 8);
  lo = hn::ConvertTo(df, hn::Sub(hn::And(v, hn::Set(di, 15)), eight));
  hi = hn::ConvertTo(df, hn::Sub(hn::ShiftRight<4>(v), eight));
}

// out[0, n) = row r of w, columns [k0, k0 + n), as f32. Quantized types need k0 and n multiples of 32.
HWY_INLINE void ConvertRow(const Weight& w, int64_t r, int64_t k0, int64_t n, float* HWY_RESTRICT out) {
  const DF df;
  const int64_t V = static_cast<int64_t>(hn::Lanes(df));
  const size_t off = static_cast<size_t>(r) * w.cols + k0;
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
      const uint16_t* s = w.scales + off / kQuantBlock;
      for (int64_t b = 0; b < n / kQuantBlock; ++b) {
        const VF d = hn::Set(df, HalfBitsToFloat(s[b]));
        for (int64_t j = 0; j < kQuantBlock; j += V)
          hn::StoreU(hn::Mul(d, LoadQ8(df, p + b * kQuantBlock + j)), df, out + b * kQuantBlock + j);
      }
      return;
    }
    case WeightType::kQ4: {
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + off / 2;
      const uint16_t* s = w.scales + off / kQuantBlock;
      for (int64_t b = 0; b < n / kQuantBlock; ++b) {
        const VF d = hn::Set(df, HalfBitsToFloat(s[b]));
        for (int64_t j = 0; j < kQuantBlock / 2; j += V) {
          VF lo, hi;
          LoadQ4(df, p + b * 16 + j, lo, hi);
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
