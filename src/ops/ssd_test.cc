// SsdStep, SsdStepBatch and SsdChunkedScan against ops::ref (the recurrence, stepped in double).
#include <cmath>
#include <string>
#include <vector>

#include "ops/reference.h"
#include "ops/ssd.h"
#include "ops/test_util.h"

namespace subq::ops {
namespace {
using testing::ExpectNear;
using testing::ForEachTarget;
using testing::Random;

// Tolerance scale of each output: the same recurrence run on |x|, |b|, |c| sums the magnitudes of
// every term that makes the output, so 1e-5 of it bounds a relative f32 error of the sum.
struct Case {
  SsdDims d;
  int L, ldx, ldbc;
  std::vector<float> x, b, c, loga, state0;
  Case(SsdDims dims, int len, bool fresh_state, float loga_min = -0.6f, float loga_max = -0.001f) : d(dims), L(len) {
    ldx = d.H * d.P + 3;
    ldbc = d.G * d.N + 2;
    x = Random(size_t(L) * ldx, L + d.P);
    b = Random(size_t(L) * ldbc, L + d.N);
    c = Random(size_t(L) * ldbc, L + d.N + 1);
    loga = Random(size_t(L) * d.H, L + 5, loga_min, loga_max);
    state0 = fresh_state ? std::vector<float>(size_t(d.H) * d.P * d.N, 0.0f) : Random(size_t(d.H) * d.P * d.N, 9);
  }
  std::vector<float> Magnitudes() const {
    auto abs = [](std::vector<float> v) {
      for (float& e : v) e = std::fabs(e);
      return v;
    };
    std::vector<float> s = abs(state0), y(size_t(L) * d.H * d.P);
    const auto ax = abs(x), ab = abs(b), ac = abs(c);
    ref::SsdScan(d, L, ax.data(), ldx, ab.data(), ac.data(), ldbc, loga.data(), s.data(), y.data(), d.H * d.P);
    return y;
  }
};

TEST(Ssd, StepMatchesReference) {
  ForEachTarget([&] {
    for (SsdDims d : {SsdDims{4, 8, 16, 1}, SsdDims{6, 5, 37, 2}, SsdDims{2, 64, 128, 1}}) {
      Case k(d, 1, false);
      auto s = k.state0, sref = k.state0;
      std::vector<float> y(size_t(d.H) * d.P), yref = y;
      SsdStep(d, k.x.data(), k.b.data(), k.c.data(), k.loga.data(), s.data(), y.data());
      ref::SsdStep(d, k.x.data(), k.b.data(), k.c.data(), k.loga.data(), sref.data(), yref.data());
      ExpectNear(y, yref, k.Magnitudes(), 1e-5, 1e-7, "y");
      ExpectNear(s, sref, std::vector<float>(s.size(), 2.0f), 1e-5, 0, "state");
    }
  });
}

TEST(Ssd, BatchedStepEqualsSingleSteps) {
  const SsdDims d{6, 5, 37, 2};
  const int B = 3;
  Case k(d, B, false);  // row i = sequence i
  std::vector<std::vector<float>> st(B, k.state0), st1(B, k.state0);
  std::vector<float*> ptr;
  for (auto& s : st) ptr.push_back(s.data());
  const int ldy = d.H * d.P + 1;
  std::vector<float> y(size_t(B) * ldy, 0.0f), y1 = y;
  SsdStepBatch(Threads{2}, d, B, k.x.data(), k.ldx, k.b.data(), k.c.data(), k.ldbc, k.loga.data(), d.H, ptr.data(),
               y.data(), ldy);
  for (int i = 0; i < B; ++i)
    SsdStep(d, k.x.data() + i * k.ldx, k.b.data() + i * k.ldbc, k.c.data() + i * k.ldbc, k.loga.data() + i * d.H,
            st1[i].data(), y1.data() + i * ldy);
  EXPECT_EQ(y, y1);
  EXPECT_EQ(st, st1);
}

void CheckScan(SsdDims d, int L, int chunk, bool fresh, int threads, float loga_min = -0.6f) {
  Case k(d, L, fresh, loga_min);
  const int ldy = d.H * d.P;
  auto s = k.state0, sref = k.state0;
  std::vector<float> y(size_t(L) * ldy), yref = y;
  std::vector<float> scratch(SsdScratchFloats(Threads{threads}, d, chunk) + 2);
  float* sc = scratch.data() + (reinterpret_cast<uintptr_t>(scratch.data()) % 8 ? 1 : 0);  // 8-byte aligned
  if (threads == 1) {
    SsdChunkedScan(d, L, chunk, k.x.data(), k.ldx, k.b.data(), k.c.data(), k.ldbc, k.loga.data(), s.data(), y.data(),
                   ldy, sc);
  } else {
    SsdChunkedScan(Threads{threads}, d, L, chunk, k.x.data(), k.ldx, k.b.data(), k.c.data(), k.ldbc, k.loga.data(),
                   s.data(), y.data(), ldy, sc);
  }
  ref::SsdScan(d, L, k.x.data(), k.ldx, k.b.data(), k.c.data(), k.ldbc, k.loga.data(), sref.data(), yref.data(), ldy);
  const std::string what = "L=" + std::to_string(L) + " chunk=" + std::to_string(chunk) + (fresh ? " fresh" : "");
  ExpectNear(y, yref, k.Magnitudes(), 1e-5, 1e-6, ("y " + what).c_str());
  // The state's terms are bounded by the initial state plus sum_s |x_s b_s| <= 1 + L.
  ExpectNear(s, sref, std::vector<float>(s.size(), 1.0f + L), 1e-5, 0, ("state " + what).c_str());
}

TEST(Ssd, ChunkedScanMatchesRecurrence) {
  for (SsdDims d : {SsdDims{4, 8, 16, 1}, SsdDims{6, 5, 37, 3}})
    for (int L : {1, 9, 70})
      for (int chunk : {1, 8, 32})
        for (bool fresh : {true, false}) CheckScan(d, L, chunk, fresh, 1 + (L + chunk) % 2);
  CheckScan(SsdDims{4, 64, 128, 1}, 300, 128, true, 2);  // Mamba-2 head and state sizes
}

// Decays of e^-4 per token: within a chunk most factors fall below the flush threshold (and would be
// denormal); flushing them must not change the result beyond f32 rounding.
TEST(Ssd, FastDecayFlushesTinyFactorsExactly) {
  CheckScan(SsdDims{4, 64, 128, 1}, 200, 64, false, 2, -4.0f);
  Case k(SsdDims{2, 8, 16, 1}, 1, false, -120.0f, -100.0f);  // one step that decays the state to zero
  auto s = k.state0, sref = k.state0;
  std::vector<float> y(16), yref(16);
  SsdStep(k.d, k.x.data(), k.b.data(), k.c.data(), k.loga.data(), s.data(), y.data());
  ref::SsdStep(k.d, k.x.data(), k.b.data(), k.c.data(), k.loga.data(), sref.data(), yref.data());
  ExpectNear(y, yref, k.Magnitudes(), 1e-5, 1e-7, "y");
}

TEST(Ssd, ChunkedScanEveryTarget) {
  ForEachTarget([&] { CheckScan(SsdDims{3, 20, 33, 1}, 50, 16, false, 2); });
}

}  // namespace
}  // namespace subq::ops
