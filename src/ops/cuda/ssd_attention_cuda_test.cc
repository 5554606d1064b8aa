// SSD step / chunked scan and attention on CUDA against ops::SsdStep,
// ops::SsdChunkedScan and ops::AttendCausal. SSD step (f32 math): relative L2
// error 1e-5. Chunked scan (bf16 tensor-core products of f32 inputs, f32
// accumulation, bf16 chunk states): 1e-2 for y and the final state (bf16
// rounding of C, B, X, the masked scores and the chunk states; 3e-3 seen).
// Attention over bf16 caches with a bf16 output: 8e-3.
#include <algorithm>
#include <cmath>

#include "ops/cuda/test_util.h"
#include "ops/ops.h"
#include "ops/ssd.h"

namespace subq::cuda::test {
namespace {

struct SsdCase {
  int H, P, N, G;
  bool mamba2;
  int L;  // chunked-prefill length
};

// Host-side decay and input scale, as the kernels derive them from dt_raw.
void Decay(const SsdCase &c, const std::vector<float> &dt_bias, const std::vector<float> &A_log, int h, float raw,
           float *loga, float *xs) {
  if (c.mamba2) {
    const float dt = ops::Softplus(raw + dt_bias[h]);
    *loga = -std::exp(A_log[h]) * dt;
    *xs = dt;
  } else {
    *loga = -ops::Softplus(raw);
    *xs = 1.0f;
  }
}

class SsdTest : public CudaTest, public ::testing::WithParamInterface<SsdCase> {};

TEST_P(SsdTest, StepAndChunkedScanMatchHost) {
  const SsdCase c = GetParam();
  const int di = c.H * c.P, ldbc = di + 2 * c.G * c.N + 4, lddt = c.H + 1;
  std::vector<float> dt_bias = Randn(c.H, rng, 0.5f, -2.0f), A_log = Randn(c.H, rng, 0.5f, 1.0f), D = Randn(c.H, rng);
  DevBuf<float> ddtb(dt_bias), dA(A_log), dD(D);
  SsdParams p{c.H, c.P, c.N, c.G, c.mamba2 ? ddtb.p : nullptr, c.mamba2 ? dA.p : nullptr, dD.p};
  const ops::SsdDims dims{c.H, c.P, c.N, c.G};
  const size_t per = size_t(c.H) * c.P * c.N;

  // --- batched step: rows in distinct shuffled slots of rows + 1; 20 rows take
  // the 4-rows-per-thread path ---
  for (int rows : {2, 20}) {
    const int slots = rows + 1;
    auto xbc = Randn(size_t(rows) * ldbc, rng), dt = Randn(size_t(rows) * lddt, rng);
    auto states = Randn(size_t(slots) * per, rng, 0.3f);
    std::vector<int> slot(rows);
    for (int r = 0; r < rows; ++r) slot[r] = rows - r;
    slot[rows - 1] = 0;
    DevBuf<float> dxbc(xbc), ddt(dt), dst(states), dy(size_t(rows) * di);
    DevBuf<int> dslot(slot);
    dy.Poison();
    SsdStep(nullptr, p, rows, dxbc.p, ldbc, dxbc.p + di, dxbc.p + di + c.G * c.N, ldbc, ddt.p, lddt, dst.p, dslot.p,
            dy.p, di);
    std::vector<float> ref(size_t(rows) * di), rst = states;
    for (int r = 0; r < rows; ++r) {
      std::vector<float> X(di), loga(c.H);
      for (int h = 0; h < c.H; ++h) {
        float xs;
        Decay(c, dt_bias, A_log, h, dt[size_t(r) * lddt + h], &loga[h], &xs);
        for (int i = 0; i < c.P; ++i) X[h * c.P + i] = xbc[size_t(r) * ldbc + h * c.P + i] * xs;
      }
      const float *row = xbc.data() + size_t(r) * ldbc;
      ops::SsdStep(dims, X.data(), row + di, row + di + c.G * c.N, loga.data(), rst.data() + size_t(slot[r]) * per,
                   ref.data() + size_t(r) * di);
      for (int h = 0; h < c.H; ++h)
        for (int i = 0; i < c.P; ++i) ref[size_t(r) * di + h * c.P + i] += D[h] * row[h * c.P + i];
    }
    const auto y = dy.Get(), st = dst.Get();
    EXPECT_REL(y, ref, 1e-5);
    EXPECT_REL(st, rst, 1e-5);
  }

  // --- chunked prefill of L tokens (the last chunk partial) from a nonzero
  // state ---
  const int L = c.L;
  auto lx = Randn(size_t(L) * ldbc, rng), ldt = Randn(size_t(L) * lddt, rng);
  auto s0 = Randn(per, rng, 0.3f);
  DevBuf<float> dlx(lx), dldt(ldt), ds(s0), dly(size_t(L) * di), scratch(SsdScratchFloats(p, L));
  dly.Poison();
  SsdChunkedScan(nullptr, p, L, dlx.p, ldbc, dlx.p + di, dlx.p + di + c.G * c.N, ldbc, dldt.p, lddt, ds.p, dly.p, di,
                 scratch.p);
  std::vector<float> X(size_t(L) * di), loga(size_t(L) * c.H), lref(size_t(L) * di), hs = s0;
  for (int t = 0; t < L; ++t)
    for (int h = 0; h < c.H; ++h) {
      float xs;
      Decay(c, dt_bias, A_log, h, ldt[size_t(t) * lddt + h], &loga[size_t(t) * c.H + h], &xs);
      for (int i = 0; i < c.P; ++i) X[size_t(t) * di + h * c.P + i] = lx[size_t(t) * ldbc + h * c.P + i] * xs;
    }
  std::vector<float> ssd_scratch(ops::SsdScratchFloats(dims, 64) + 16);
  ops::SsdChunkedScan(dims, L, 64, X.data(), di, lx.data() + di, lx.data() + di + c.G * c.N, ldbc, loga.data(),
                      hs.data(), lref.data(), di, ssd_scratch.data());
  for (int t = 0; t < L; ++t)
    for (int h = 0; h < c.H; ++h)
      for (int i = 0; i < c.P; ++i) lref[size_t(t) * di + h * c.P + i] += D[h] * lx[size_t(t) * ldbc + h * c.P + i];
  const auto ly = dly.Get(), ls = ds.Get();
  EXPECT_REL(ly, lref, 1e-2);
  EXPECT_REL(ls, hs, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Shapes, SsdTest,
                         // The Mamba-2-2.7B layer at L 2085 and the G 2 case at L 2565 run several heads
                         // per block (ragged last groups) and pass state over 17 and 21 chunks.
                         ::testing::Values(SsdCase{8, 64, 64, 1, true, 2 * kSsdChunk + 23},
                                           SsdCase{6, 32, 128, 2, true, 2 * kSsdChunk + 23},
                                           SsdCase{8, 16, 8, 4, false, 2 * kSsdChunk + 23},
                                           SsdCase{4, 64, 64, 4, false, kSsdChunk},
                                           SsdCase{4, 128, 32, 2, true, 3 * kSsdChunk + 1},
                                           SsdCase{80, 64, 128, 1, true, 16 * kSsdChunk + 37},
                                           SsdCase{16, 64, 64, 2, true, 20 * kSsdChunk + 5}));

struct AttnCase {
  int n_heads, n_kv, hd;
};
class AttentionTest : public CudaTest, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(AttentionTest, RaggedRowsMatchHost) {
  const AttnCase c = GetParam();
  const int slots = 3, cap = 1600, width = c.n_kv * c.hd, ldq = (c.n_heads + 2 * c.n_kv) * c.hd;
  std::vector<int> slot = {1, 0, 2, 1}, pos = {0, 37, 1599, 700};
  const int rows = static_cast<int>(slot.size());
  auto kc = Rounded(Randn(size_t(slots) * cap * width, rng)), vc = Rounded(Randn(size_t(slots) * cap * width, rng));
  auto qkv = Randn(size_t(rows) * ldq, rng);
  DevBuf<bf16> dk(ToBf(kc)), dv(ToBf(vc)), dout(size_t(rows) * c.n_heads * c.hd);
  DevBuf<float> dq(qkv), scratch(AttentionScratchFloats(rows, c.n_heads, c.hd, cap));
  DevBuf<int> dslot(slot), dpos(pos);
  // Append each row's new k, v at its position (slot 1 gets rows 0 and 3 at
  // different positions).
  KvAppend(nullptr, dq.p + c.n_heads * c.hd, dq.p + c.n_heads * c.hd + width, ldq, rows, c.n_kv, c.hd, dk.p, dv.p, cap,
           dslot.p, dpos.p);
  for (int r = 0; r < rows; ++r)
    for (int e = 0; e < width; ++e) {
      const size_t dst = (size_t(slot[r]) * cap + pos[r]) * width + e;
      kc[dst] = RoundBF16(qkv[size_t(r) * ldq + c.n_heads * c.hd + e]);
      vc[dst] = RoundBF16(qkv[size_t(r) * ldq + c.n_heads * c.hd + width + e]);
    }
  dout.Poison();
  Attention(nullptr, dq.p, ldq, rows, c.n_heads, c.n_kv, c.hd, dk.p, dv.p, cap, dslot.p, dpos.p, cap, dout.p,
            c.n_heads * c.hd, scratch.p);
  std::vector<float> ref(size_t(rows) * c.n_heads * c.hd), hs(ops::AttentionScratchFloats(c.hd));
  for (int r = 0; r < rows; ++r) {
    const size_t base = size_t(slot[r]) * cap * width;
    ops::AttendCausal(qkv.data() + size_t(r) * ldq, ldq, 1, c.n_heads, c.n_kv, c.hd, kc.data() + base, vc.data() + base,
                      width, pos[r], ref.data() + size_t(r) * c.n_heads * c.hd, c.n_heads * c.hd, hs.data());
  }
  const auto o = FromBf(dout.Get());
  EXPECT_REL(o, ref, 8e-3);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(AttnCase{8, 2, 64}, AttnCase{8, 4, 8}, AttnCase{32, 8, 64},
                                           AttnCase{4, 4, 128}, AttnCase{16, 2, 128}));

}  // namespace
}  // namespace subq::cuda::test
