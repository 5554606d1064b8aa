// ops::AttendCausal: causal softmax attention with GQA, online softmax over key tiles (no L x T
// buffer). The queries that share a KV head -- the heads of its group, for a block of tokens -- form
// up to kSlots "query slots" that walk the key tiles together, so each K/V row is read once per block:
//   scores S[R, n] = Q_slots K_tile^T * scale        (packed GEMM when R fills a register tile,
//   online softmax per slot (running max m, sum l)    else per-key dot products for decode)
//   acc[R, hd] = corr * acc + P[R, n] V_tile
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/cpu/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "ops/cpu/gemm-inl.h"
#include "ops/ops.h"

#ifndef SUBQ_OPS_CPU_ATTENTION_CONSTANTS_  // this file is compiled once per target
#define SUBQ_OPS_CPU_ATTENTION_CONSTANTS_
namespace subq::ops {
namespace {
constexpr int kSlots = 32;  // query slots walking the key tiles together
constexpr int kTile = kAttentionKeyTile;
}  // namespace
}  // namespace subq::ops
#endif

HWY_BEFORE_NAMESPACE();
namespace subq::ops::HWY_NAMESPACE {
namespace {
using gemm::DF;
using gemm::VF;

// Which query rows one work item handles: tokens t0..t0+nt-1 x heads h0..h0+nh-1 (of KV head kh).
struct Slots {
  const float* q;
  int ldq, hd, t0, nt, h0, nh;
  const float* Row(int r) const { return q + static_cast<size_t>(t0 + r / nh) * ldq + (h0 + r % nh) * hd; }
  int Token(int r) const { return t0 + r / nh; }
};

struct PackSlotsA {  // A(r, k) = Q row of slot r
  const Slots* s;
  void operator()(int i0, int mr, int k0, int kc, float* HWY_RESTRICT dst) const {
    for (int i = 0; i < mr; ++i) {
      const float* src = s->Row(i0 + i) + k0;
      for (int k = 0; k < kc; ++k) dst[k * gemm::kMR + i] = src[k];
    }
  }
};

HWY_INLINE float Dot(DF df, const float* a, const float* b, int n) {
  const int V = static_cast<int>(hn::Lanes(df));
  VF s = hn::Zero(df);
  int i = 0;
  for (; i + V <= n; i += V) s = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), s);
  float r = hn::GetLane(hn::SumOfLanes(df, s));
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

// acc[0, n) = acc * c + p * v.
HWY_INLINE void ScaleAxpy(DF df, float* acc, float c, float p, const float* v, int n) {
  const int V = static_cast<int>(hn::Lanes(df));
  const VF vc = hn::Set(df, c), vp = hn::Set(df, p);
  int i = 0;
  for (; i + V <= n; i += V) hn::StoreU(hn::MulAdd(vp, hn::LoadU(df, v + i), hn::Mul(vc, hn::LoadU(df, acc + i))), df, acc + i);
  for (; i < n; ++i) acc[i] = acc[i] * c + p * v[i];
}

void AttendSlots(const Slots& sl, int kh, const float* k, const float* v, int ldkv, int past, float* out, int ldo,
                 float* scratch) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  const int hd = sl.hd, R = sl.nt * sl.nh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float* S = scratch;                                       // [R, kTile] scores, then probabilities
  float* acc = S + static_cast<size_t>(kSlots) * kTile;     // [R, hd]
  float* m = acc + static_cast<size_t>(kSlots) * hd;        // [R] running max
  float* l = m + kSlots;                                    // [R] running sum
  std::fill(acc, acc + static_cast<size_t>(R) * hd, 0.0f);
  std::fill(m, m + R, -INFINITY);
  std::fill(l, l + R, 0.0f);
  const float* kb = k + kh * hd;  // key j at kb + j * ldkv
  const float* vb = v + kh * hd;
  const bool use_gemm = R >= gemm::kMR;
  const int T = past + sl.t0 + sl.nt;  // keys seen by the last token of the block
  for (int j0 = 0; j0 < T; j0 += kTile) {
    const int n = std::min(kTile, T - j0);
    if (use_gemm) {
      gemm::GemmRange(R, 0, n, hd, scale, PackSlotsA{&sl}, gemm::PackStridedB{kb + static_cast<size_t>(j0) * ldkv, ldkv, true},
                      0.0f, S, kTile);
    } else {
      for (int j = 0; j < n; ++j) {
        const float* kr = kb + static_cast<size_t>(j0 + j) * ldkv;  // [hd]
        for (int r = 0; r < R; ++r) S[r * kTile + j] = Dot(df, sl.Row(r), kr, hd) * scale;
      }
    }
    float corr[kSlots];
    for (int r = 0; r < R; ++r) {
      float* s = S + r * kTile;                                        // [n]
      const int valid = std::clamp(past + sl.Token(r) + 1 - j0, 0, n);  // causal: keys <= past + t
      float mt = -INFINITY;
      for (int j = 0; j < valid; ++j) mt = std::max(mt, s[j]);
      const float mn = std::max(m[r], mt);
      corr[r] = valid == 0 ? 1.0f : std::exp(m[r] - mn);  // exp(-inf) = 0 on the first tile
      const VF vm = hn::Set(df, mn);
      VF vs = hn::Zero(df);
      int j = 0;
      for (; j + V <= valid; j += V) {
        const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, s + j), vm));
        hn::StoreU(e, df, s + j);
        vs = hn::Add(vs, e);
      }
      float sum = hn::GetLane(hn::SumOfLanes(df, vs));
      for (; j < valid; ++j) sum += s[j] = std::exp(s[j] - mn);
      for (; j < n; ++j) s[j] = 0.0f;  // masked keys weigh nothing
      if (valid > 0) m[r] = mn;
      l[r] = l[r] * corr[r] + sum;
    }
    if (use_gemm) {
      for (int r = 0; r < R; ++r) {
        float* a = acc + static_cast<size_t>(r) * hd;
        for (int i = 0; i < hd; ++i) a[i] *= corr[r];
      }
      gemm::GemmRange(R, 0, hd, n, 1.0f, gemm::PackStridedA{S, kTile, false},
                      gemm::PackStridedB{vb + static_cast<size_t>(j0) * ldkv, ldkv, false}, 1.0f, acc, hd);
    } else {
      for (int j = 0; j < n; ++j) {
        const float* vr = vb + static_cast<size_t>(j0 + j) * ldkv;  // [hd]
        for (int r = 0; r < R; ++r) ScaleAxpy(df, acc + static_cast<size_t>(r) * hd, j == 0 ? corr[r] : 1.0f, S[r * kTile + j], vr, hd);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float* o = out + static_cast<size_t>(sl.Token(r)) * ldo + (sl.h0 + r % sl.nh) * hd;  // [hd]
    const float inv = 1.0f / l[r];
    for (int i = 0; i < hd; ++i) o[i] = acc[static_cast<size_t>(r) * hd + i] * inv;
  }
}

}  // namespace

void AttendImpl(int nt, const float* q, int ldq, int L, int n_heads, int n_kv, int hd, const float* k, const float* v,
                int ldkv, int past, float* out, int ldo, float* scratch, size_t per_thread) {
  const int group = n_heads / n_kv;
  const int nh = std::min(group, kSlots), head_chunks = (group + nh - 1) / nh;
  const int tb = std::max(1, kSlots / nh), token_blocks = (L + tb - 1) / tb;
  const int items = n_kv * head_chunks * token_blocks;
#pragma omp parallel for schedule(dynamic) num_threads(nt) if (nt > 1 && items > 1)
  for (int it = 0; it < items; ++it) {
    const int kh = it / (head_chunks * token_blocks), rest = it % (head_chunks * token_blocks);
    const int hc = rest / token_blocks, blk = rest % token_blocks;
    const int h0 = kh * group + hc * nh;
    const Slots sl{q, ldq, hd, blk * tb, std::min(tb, L - blk * tb), h0, std::min(nh, kh * group + group - h0)};
    AttendSlots(sl, kh, k, v, ldkv, past, out, ldo, scratch + per_thread * omp_get_thread_num());
  }
}

}  // namespace subq::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace subq::ops {
HWY_EXPORT(AttendImpl);

size_t AttentionScratchFloats(int hd) { return static_cast<size_t>(kSlots) * (kTile + hd + 2); }

void AttendCausal(const float* q, int ldq, int L, int n_heads, int n_kv_heads, int hd, const float* k,
                  const float* v, int ldkv, int past, float* out, int ldo, float* scratch) {
  HWY_DYNAMIC_DISPATCH(AttendImpl)(1, q, ldq, L, n_heads, n_kv_heads, hd, k, v, ldkv, past, out, ldo, scratch,
                                   AttentionScratchFloats(hd));
}

void AttendCausal(const Threads& th, const float* q, int ldq, int L, int n_heads, int n_kv_heads, int hd,
                  const float* k, const float* v, int ldkv, int past, float* out, int ldo, float* scratch) {
  HWY_DYNAMIC_DISPATCH(AttendImpl)(std::max(1, th.n), q, ldq, L, n_heads, n_kv_heads, hd, k, v, ldkv, past, out, ldo,
                                   scratch, AttentionScratchFloats(hd));
}
}  // namespace subq::ops
#endif
