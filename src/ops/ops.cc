// Provisional CPU paths of the ops (f32 GEMM through OpenBLAS, other weight types by dequantised rows);
// ops/cpu/ replaces them with Highway kernels.
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace subq::ops {

size_t AttentionScratchFloats(int hd) { return kAttentionKeyTile + static_cast<size_t>(hd); }

void AttendCausal(const float* q, int ldq, int L, int n_heads, int n_kv, int hd, const float* k, const float* v,
                  int ldkv, int past, float* out, int ldo, float* scratch) {
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float* s = scratch;                     // [tile] scores of one key tile
  float* acc = scratch + kAttentionKeyTile;  // [hd]
  for (int t = 0; t < L; ++t) {
    const int T = past + t + 1;  // causal: keys 0..past+t
    for (int h = 0; h < n_heads; ++h) {
      const float* qh = q + static_cast<size_t>(t) * ldq + h * hd;
      const int kh = h / group;
      float mx = -INFINITY, sum = 0.0f;
      std::fill(acc, acc + hd, 0.0f);
      for (int j0 = 0; j0 < T; j0 += kAttentionKeyTile) {
        const int n = std::min(kAttentionKeyTile, T - j0);
        float tmx = -INFINITY;
        for (int j = 0; j < n; ++j) {
          const float* kr = k + static_cast<size_t>(j0 + j) * ldkv + kh * hd;
          float d = 0.0f;
          for (int i = 0; i < hd; ++i) d += qh[i] * kr[i];
          s[j] = d * scale;
          tmx = std::max(tmx, s[j]);
        }
        const float nmx = std::max(mx, tmx);
        const float corr = std::exp(mx - nmx);  // 0 on the first tile
        sum *= corr;
        for (int i = 0; i < hd; ++i) acc[i] *= corr;
        for (int j = 0; j < n; ++j) {
          const float p = std::exp(s[j] - nmx);
          sum += p;
          const float* vr = v + static_cast<size_t>(j0 + j) * ldkv + kh * hd;
          for (int i = 0; i < hd; ++i) acc[i] += p * vr[i];
        }
        mx = nmx;
      }
      float* o = out + static_cast<size_t>(t) * ldo + h * hd;
      const float inv = 1.0f / sum;
      for (int i = 0; i < hd; ++i) o[i] = acc[i] * inv;
    }
  }
}

}  // namespace subq::ops
