// Norms, softmax, SiLU, RoPE and causal conv against ops::ref on random data with odd sizes and tails.
#include <cmath>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "ops/reference.h"
#include "ops/test_util.h"

namespace subq::ops {
namespace {
using testing::ForEachTarget;
using testing::Random;

// Element-wise f32 ops: 1e-5 relative (plus 1e-6 absolute near zero) of the double reference.
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                 double rel = 1e-5, double abs = 1e-6) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(got[i] - want[i]), rel * std::fabs(want[i]) + abs) << what << " at " << i;
}

TEST(Elementwise, RmsNorm) {
  ForEachTarget([&] {
    for (int n : {1, 7, 16, 100, 768})
      for (int rows : {1, 3}) {
        const auto x = Random(size_t(rows) * n, n), w = Random(n, n + 1, 0.5f, 1.5f);
        std::vector<float> got(x.size()), want(x.size());
        RmsNorm(x.data(), w.data(), got.data(), rows, n, 1e-5f);
        ref::RmsNorm(x.data(), w.data(), want.data(), rows, n, 1e-5f);
        ExpectClose(got, want, "n=" + std::to_string(n));
        std::vector<float> inplace = x;  // out may equal x
        RmsNorm(inplace.data(), w.data(), inplace.data(), rows, n, 1e-5f);
        ExpectClose(inplace, want, "in place n=" + std::to_string(n));
      }
  });
}

TEST(Elementwise, GatedRmsNorm) {
  ForEachTarget([&] {
    for (int n : {8, 48, 100, 1536})
      for (int group : {n, n / 2 > 0 && n % 2 == 0 ? n / 2 : n}) {
        const int rows = 3, ldy = n + 5, ldz = n + 2;
        auto y = Random(size_t(rows) * ldy, n, -3, 3), want = y;
        const auto z = Random(size_t(rows) * ldz, n + 1, -6, 6), w = Random(n, n + 2, 0.5f, 1.5f);
        GatedRmsNorm(y.data(), ldy, z.data(), ldz, w.data(), rows, n, group, 1e-5f);
        ref::GatedRmsNorm(want.data(), ldy, z.data(), ldz, w.data(), rows, n, group, 1e-5f);
        ExpectClose(y, want, "n=" + std::to_string(n) + " group=" + std::to_string(group));
      }
  });
}

TEST(Elementwise, Softmax) {
  ForEachTarget([&] {
    for (int n : {1, 5, 16, 33, 1000}) {
      auto x = Random(n, n, -20, 20), want = x;
      SoftmaxInPlace(x.data(), n);
      ref::SoftmaxInPlace(want.data(), n);
      ExpectClose(x, want, "n=" + std::to_string(n), 1e-5, 1e-9);
    }
  });
}

TEST(Elementwise, Silu) {
  ForEachTarget([&] {
    for (int64_t n : {1, 15, 16, 1001}) {
      auto a = Random(n, 3 + n, -100, 100), b = Random(n, 4 + n);
      a[0] = -200.0f;  // far below the range where exp(-x) overflows
      auto want = a, a2 = a, want2 = a;
      SiluMul(a.data(), b.data(), n);
      ref::SiluMul(want.data(), b.data(), n);
      ExpectClose(a, want, "silu_mul n=" + std::to_string(n));
      SiluInPlace(a2.data(), n);
      ref::SiluInPlace(want2.data(), n);
      ExpectClose(a2, want2, "silu n=" + std::to_string(n));
    }
  });
}

TEST(Elementwise, Rope) {
  ForEachTarget([&] {
    for (bool interleaved : {false, true})
      for (int hd : {2, 6, 32, 64, 128, 130})
        for (int pos : {0, 1, 517, 4095}) {
          const int heads = 3;
          std::vector<float> inv(hd / 2);
          for (int i = 0; i < hd / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / hd);
          auto x = Random(size_t(heads) * hd, hd + pos), want = x;
          Rope(x.data(), heads, hd, pos, inv.data(), interleaved);
          ref::Rope(want.data(), heads, hd, pos, inv.data(), interleaved);
          // cos/sin of angles up to ~4e3 rad in f32: ~1 ulp of the angle's magnitude each.
          ExpectClose(x, want, "hd=" + std::to_string(hd) + " pos=" + std::to_string(pos), 1e-5, 2e-6);
        }
  });
}

TEST(Elementwise, CausalConvPrefillAndSteps) {
  ForEachTarget([&] {
    for (int K : {1, 2, 4})
      for (int C : {1, 17, 64, 100})
        for (int L : {1, 2, 3, 9}) {
          const int ldin = C + 3, ldout = C + 1, S = K - 1;
          const auto in = Random(size_t(L) * ldin, C * 10 + L), w = Random(size_t(C) * K, K), b = Random(C, C);
          auto state = Random(size_t(S) * C, 99), want_state = state, step_state = state;
          std::vector<float> out(size_t(L) * ldout, 0.0f), want = out, step_out = out;
          for (bool silu : {false, true}) {
            CausalConv(in.data(), ldin, L, C, w.data(), K > 2 ? b.data() : nullptr, K, state.data(), out.data(), ldout,
                       silu);
            ref::CausalConv(in.data(), ldin, L, C, w.data(), K > 2 ? b.data() : nullptr, K, want_state.data(),
                            want.data(), ldout, silu);
            for (int t = 0; t < L; ++t)  // the same tokens one step at a time
              CausalConv(in.data() + size_t(t) * ldin, ldin, 1, C, w.data(), K > 2 ? b.data() : nullptr, K,
                         step_state.data(), step_out.data() + size_t(t) * ldout, ldout, silu);
            const std::string what = "K=" + std::to_string(K) + " C=" + std::to_string(C) + " L=" + std::to_string(L);
            ExpectClose(out, want, what);
            ExpectClose(step_out, want, "steps " + what);
            ExpectClose(state, want_state, "state " + what, 0, 0);
            ExpectClose(step_state, want_state, "step state " + what, 0, 0);
          }
        }
  });
}

}  // namespace
}  // namespace subq::ops
