// Row-wise and element-wise ops on f32 (Highway, runtime dispatch): RmsNorm, GatedRmsNorm, softmax,
// SiLU, RoPE, depthwise causal conv. Single-threaded: they are a small share of a forward pass and
// their callers already split work over sequences.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/cpu/elementwise.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <vector>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "ops/ops.h"

HWY_BEFORE_NAMESPACE();
namespace subq::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace {
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// silu(x) = x / (1 + exp(-x)); exp's argument is capped where its result would overflow anyway
// (silu is then ~0, which x / (1 + e^88) still gives).
HWY_INLINE VF SiluV(DF df, VF x) {
  const VF e = hn::Exp(df, hn::Min(hn::Neg(x), hn::Set(df, 88.0f)));
  return hn::Div(x, hn::Add(hn::Set(df, 1.0f), e));
}

float SumSquares(const float* HWY_RESTRICT x, int n) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  VF s0 = hn::Zero(df), s1 = hn::Zero(df);
  int i = 0;
  for (; i + 2 * V <= n; i += 2 * V) {
    const VF a = hn::LoadU(df, x + i), b = hn::LoadU(df, x + i + V);
    s0 = hn::MulAdd(a, a, s0);
    s1 = hn::MulAdd(b, b, s1);
  }
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
  for (; i < n; ++i) s += x[i] * x[i];
  return s;
}

// o[i] = x[i] * inv * w[i].
void ScaleByWeights(const float* x, float inv, const float* w, float* o, int n) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  const VF vi = hn::Set(df, inv);
  int i = 0;
  for (; i + V <= n; i += V) hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, x + i), vi), hn::LoadU(df, w + i)), df, o + i);
  for (; i < n; ++i) o[i] = x[i] * inv * w[i];
}

}  // namespace

void RmsNormImpl(const float* x, const float* w, float* out, int rows, int n, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * n;  // [n]
    const float inv = 1.0f / std::sqrt(SumSquares(xr, n) / n + eps);
    ScaleByWeights(xr, inv, w, out + static_cast<size_t>(r) * n, n);
  }
}

void GatedRmsNormImpl(float* y, int ldy, const float* z, int ldz, const float* w, int rows, int n, int group,
                      float eps) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  for (int t = 0; t < rows; ++t) {
    float* yr = y + static_cast<size_t>(t) * ldy;        // [n]
    const float* zr = z + static_cast<size_t>(t) * ldz;  // [n]
    int i = 0;
    for (; i + V <= n; i += V) hn::StoreU(hn::Mul(hn::LoadU(df, yr + i), SiluV(df, hn::LoadU(df, zr + i))), df, yr + i);
    for (; i < n; ++i) yr[i] *= Silu(zr[i]);  // gate before the norm
    for (int g0 = 0; g0 < n; g0 += group) {
      const float inv = 1.0f / std::sqrt(SumSquares(yr + g0, group) / group + eps);
      ScaleByWeights(yr + g0, inv, w + g0, yr + g0, group);
    }
  }
}

void SoftmaxImpl(float* x, int n) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  VF vm = hn::Set(df, -INFINITY);
  int i = 0;
  for (; i + V <= n; i += V) vm = hn::Max(vm, hn::LoadU(df, x + i));
  float mx = hn::GetLane(hn::MaxOfLanes(df, vm));
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  const VF m = hn::Set(df, mx);
  VF vs = hn::Zero(df);
  for (i = 0; i + V <= n; i += V) {
    const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i), m));
    hn::StoreU(e, df, x + i);
    vs = hn::Add(vs, e);
  }
  float s = hn::GetLane(hn::SumOfLanes(df, vs));
  for (; i < n; ++i) s += x[i] = std::exp(x[i] - mx);
  const float inv = 1.0f / s;
  const VF vi = hn::Set(df, inv);
  for (i = 0; i + V <= n; i += V) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), vi), df, x + i);
  for (; i < n; ++i) x[i] *= inv;
}

void SiluMulImpl(float* a, const float* b, int64_t n) {
  const DF df;
  const int64_t V = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + V <= n; i += V) hn::StoreU(hn::Mul(SiluV(df, hn::LoadU(df, a + i)), hn::LoadU(df, b + i)), df, a + i);
  for (; i < n; ++i) a[i] = Silu(a[i]) * b[i];
}

void SiluInPlaceImpl(float* x, int64_t n) {
  const DF df;
  const int64_t V = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + V <= n; i += V) hn::StoreU(SiluV(df, hn::LoadU(df, x + i)), df, x + i);
  for (; i < n; ++i) x[i] = Silu(x[i]);
}

void RopeImpl(float* x, int n_heads, int hd, int pos, const float* inv_freq, bool interleaved) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  const int half = hd / 2;
  // cs [hd]: per pair its cos, sn [hd]: its sin with the sign each element of the pair takes, laid out
  // like the head (interleaved: c0 c0 c1 c1 ..; rotate-half: c0 c1 .. c0 c1 ..). One sincos per pair.
  // On the stack for usual head sizes: decode must not allocate (a thread_local would, on a thread's
  // first call, which OpenMP's dynamic schedule can place anywhere in a run).
  float stack_buf[1024];
  std::vector<float> heap_buf;
  if (2 * static_cast<size_t>(hd) > std::size(stack_buf)) heap_buf.resize(2 * static_cast<size_t>(hd));
  float* cs = heap_buf.empty() ? stack_buf : heap_buf.data();
  float* sn = cs + hd;
  for (int i = 0; i < half; ++i) {
    const float ang = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(ang), s = std::sin(ang);
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    cs[a] = cs[b] = c;
    sn[a] = -s;
    sn[b] = s;
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * hd;  // [hd]
    int i = 0;
    if (interleaved) {
      // out = x * cos + pairswap(x) * signed sin, pairswap(x0, x1) = (x1, x0).
#if HWY_TARGET != HWY_SCALAR  // one-lane vectors have no pairs to swap
      for (; i + V <= hd; i += V) {
        const VF xv = hn::LoadU(df, v + i);
        hn::StoreU(hn::MulAdd(xv, hn::LoadU(df, cs + i), hn::Mul(hn::Shuffle2301(xv), hn::LoadU(df, sn + i))), df, v + i);
      }
#endif
      for (; i < hd; i += 2) {
        const float x0 = v[i], x1 = v[i + 1];
        v[i] = x0 * cs[i] + x1 * sn[i];
        v[i + 1] = x1 * cs[i + 1] + x0 * sn[i + 1];
      }
    } else {
      for (; i + V <= half; i += V) {
        const VF x0 = hn::LoadU(df, v + i), x1 = hn::LoadU(df, v + half + i);
        hn::StoreU(hn::MulAdd(x0, hn::LoadU(df, cs + i), hn::Mul(x1, hn::LoadU(df, sn + i))), df, v + i);
        hn::StoreU(hn::MulAdd(x1, hn::LoadU(df, cs + half + i), hn::Mul(x0, hn::LoadU(df, sn + half + i))), df,
                   v + half + i);
      }
      for (; i < half; ++i) {
        const float x0 = v[i], x1 = v[half + i];
        v[i] = x0 * cs[i] + x1 * sn[i];
        v[half + i] = x1 * cs[half + i] + x0 * sn[half + i];
      }
    }
  }
}

void CausalConvImpl(const float* in, int ldin, int L, int C, const float* w, const float* bias, int K, float* state,
                    float* out, int ldout, bool silu) {
  const DF df;
  const int V = static_cast<int>(hn::Lanes(df));
  const int S = K - 1;  // state rows
  // wt [K, C]: the taps transposed so a vector of channels loads contiguously.
  // On the stack up to 64 KiB (conv_dim x 4 taps of the models we know), else on the heap: decode
  // must not allocate, and a thread_local would on a thread's first call.
  constexpr size_t kStackFloats = 16384;
  float stack_wt[kStackFloats];
  std::vector<float> heap_wt;
  if (static_cast<size_t>(K) * C > kStackFloats) heap_wt.resize(static_cast<size_t>(K) * C);
  float* wt = heap_wt.empty() ? stack_wt : heap_wt.data();
  for (int c = 0; c < C; ++c)
    for (int k = 0; k < K; ++k) wt[static_cast<size_t>(k) * C + c] = w[static_cast<size_t>(c) * K + k];
  const float* stack_rows[16];  // [K] the input row each tap reads
  std::vector<const float*> heap_rows;
  if (K > 16) heap_rows.resize(K);
  const float** rows = heap_rows.empty() ? stack_rows : heap_rows.data();
  for (int t = 0; t < L; ++t) {
    float* o = out + static_cast<size_t>(t) * ldout;  // [C]
    // Tap k reads input token t + k - S: from the state while that is negative.
    for (int k = 0; k < K; ++k) {
      const int j = t + k - S;
      rows[k] = j >= 0 ? in + static_cast<size_t>(j) * ldin : state + static_cast<size_t>(S + j) * C;
    }
    int c = 0;
    for (; c + V <= C; c += V) {
      VF acc = bias != nullptr ? hn::LoadU(df, bias + c) : hn::Zero(df);
      for (int k = 0; k < K; ++k) acc = hn::MulAdd(hn::LoadU(df, &wt[static_cast<size_t>(k) * C + c]), hn::LoadU(df, rows[k] + c), acc);
      hn::StoreU(silu ? SiluV(df, acc) : acc, df, o + c);
    }
    for (; c < C; ++c) {
      float acc = bias != nullptr ? bias[c] : 0.0f;
      for (int k = 0; k < K; ++k) acc += wt[static_cast<size_t>(k) * C + c] * rows[k][c];
      o[c] = silu ? Silu(acc) : acc;
    }
  }
  // New state: the last S pre-conv inputs of (old state ++ in).
  if (S == 0) return;
  if (L >= S) {
    for (int r = 0; r < S; ++r)
      std::memcpy(state + static_cast<size_t>(r) * C, in + static_cast<size_t>(L - S + r) * ldin, C * 4);
  } else {
    std::memmove(state, state + static_cast<size_t>(L) * C, static_cast<size_t>(S - L) * C * 4);
    for (int r = 0; r < L; ++r)
      std::memcpy(state + static_cast<size_t>(S - L + r) * C, in + static_cast<size_t>(r) * ldin, C * 4);
  }
}

}  // namespace subq::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace subq::ops {
HWY_EXPORT(RmsNormImpl);
HWY_EXPORT(GatedRmsNormImpl);
HWY_EXPORT(SoftmaxImpl);
HWY_EXPORT(SiluMulImpl);
HWY_EXPORT(SiluInPlaceImpl);
HWY_EXPORT(RopeImpl);
HWY_EXPORT(CausalConvImpl);

void RmsNorm(const float* x, const float* w, float* out, int rows, int n, float eps) {
  HWY_DYNAMIC_DISPATCH(RmsNormImpl)(x, w, out, rows, n, eps);
}
void GatedRmsNorm(float* y, int ldy, const float* z, int ldz, const float* w, int rows, int n, int group, float eps) {
  HWY_DYNAMIC_DISPATCH(GatedRmsNormImpl)(y, ldy, z, ldz, w, rows, n, group, eps);
}
void SoftmaxInPlace(float* x, int n) { HWY_DYNAMIC_DISPATCH(SoftmaxImpl)(x, n); }
void SiluMul(float* a, const float* b, int64_t n) { HWY_DYNAMIC_DISPATCH(SiluMulImpl)(a, b, n); }
void SiluInPlace(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(SiluInPlaceImpl)(x, n); }
void Rope(float* x, int n_heads, int hd, int pos, const float* inv_freq, bool interleaved) {
  HWY_DYNAMIC_DISPATCH(RopeImpl)(x, n_heads, hd, pos, inv_freq, interleaved);
}
void CausalConv(const float* in, int ldin, int L, int C, const float* w, const float* bias, int K, float* state,
                float* out, int ldout, bool silu) {
  HWY_DYNAMIC_DISPATCH(CausalConvImpl)(in, ldin, L, C, w, bias, K, state, out, ldout, silu);
}
}  // namespace subq::ops
#endif
