// CUDA ops against the CPU ops (ops/ops.h: the scalar paths) on bf16-rounded inputs. Tolerances (relative
// L2 error): f32 outputs of bf16 operands 1e-5 (GEMM, f32 accumulate), bf16 outputs 8e-3 (one bf16 rounding
// is <= 2^-9 relative per element), f32 element-wise math 1e-5.
#include <algorithm>
#include <numeric>

#include "ops/cuda/test_util.h"
#include "ops/ops.h"

namespace subq::cuda::test {
namespace {

constexpr double kF32Tol = 1e-5, kBf16OutTol = 8e-3;

TEST(CudaDevice, ReasonNamesMissingDevice) {
  const std::string why = DeviceUnavailableReason();
  if (!why.empty()) EXPECT_EQ(why.rfind("no CUDA device: ", 0), 0u) << why;
}

TEST_F(CudaTest, GemmMatchesHostProduct) {
  for (bool acc : {false, true}) {
    const int M = 37, N = 200, K = 96;
    auto x = Rounded(Randn(size_t(M) * K, rng)), w = Rounded(Randn(size_t(N) * K, rng, 0.1f));
    auto y0 = Randn(size_t(M) * N, rng);
    DevBuf<bf16> dx(ToBf(x)), dw(ToBf(w));
    DevBuf<float> dy(y0);
    Gemm gemm;
    gemm.Run(nullptr, dx.p, K, M, dw.p, N, K, dy.p, N, acc);
    std::vector<float> ref(size_t(M) * N);
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double s = acc ? y0[size_t(m) * N + n] : 0.0;
        for (int k = 0; k < K; ++k) s += double(x[size_t(m) * K + k]) * w[size_t(n) * K + k];
        ref[size_t(m) * N + n] = float(s);
      }
    const auto y = dy.Get();
    EXPECT_REL(y, ref, kF32Tol);
  }
}

TEST_F(CudaTest, RmsNormAndResidualAdd) {
  const int rows = 5, n = 300;
  auto x = Randn(size_t(rows) * n, rng), d = Randn(size_t(rows) * n, rng), w = Randn(n, rng, 0.5f, 1.0f);
  DevBuf<float> dx(x), dd(d), dw(w);
  DevBuf<bf16> out(size_t(rows) * n);
  out.Poison();
  RmsNorm(nullptr, dx.p, dw.p, out.p, rows, n, 1e-5f);
  std::vector<float> ref(x.size());
  ops::RmsNorm(x.data(), w.data(), ref.data(), rows, n, 1e-5f);
  const auto o1 = FromBf(out.Get());
  EXPECT_REL(o1, ref, kBf16OutTol);
  AddRmsNorm(nullptr, dx.p, dd.p, n, dw.p, out.p, rows, n, 1e-5f);
  for (size_t i = 0; i < x.size(); ++i) x[i] += d[i];
  ops::RmsNorm(x.data(), w.data(), ref.data(), rows, n, 1e-5f);
  const auto o2 = FromBf(out.Get()), xs = dx.Get();
  EXPECT_REL(o2, ref, kBf16OutTol);
  EXPECT_REL(xs, x, kF32Tol);
}

TEST_F(CudaTest, GatedNormsAndSwiGlu) {
  const int rows = 4, n = 256, group = 128, ld = 600;
  auto y = Randn(size_t(rows) * ld, rng), z = Randn(size_t(rows) * ld, rng), w = Randn(n, rng, 0.5f, 1.0f);
  auto zb = Randn(n, rng);
  DevBuf<float> dy(y), dz(z), dw(w), dzb(zb);
  DevBuf<bf16> out(size_t(rows) * n);
  out.Poison();
  GatedRmsNorm(nullptr, dy.p, ld, dz.p + 3, ld, dw.p, out.p, rows, n, group, 1e-5f);
  std::vector<float> ref = y;
  ops::GatedRmsNorm(ref.data(), ld, z.data() + 3, ld, w.data(), rows, n, group, 1e-5f);
  std::vector<float> refc(size_t(rows) * n), refg(size_t(rows) * n), refm(size_t(rows) * n);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < n; ++i) {
      refc[size_t(r) * n + i] = ref[size_t(r) * ld + i];
      refg[size_t(r) * n + i] = y[size_t(r) * ld + i] * ops::Silu(z[size_t(r) * ld + i] + zb[i]);
      refm[size_t(r) * n + i] = ops::Silu(y[size_t(r) * ld + i]) * y[size_t(r) * ld + n + i];
    }
  const auto og = FromBf(out.Get());
  EXPECT_REL(og, refc, kBf16OutTol);
  SiluGate(nullptr, dy.p, ld, dz.p, ld, dzb.p, out.p, rows, n);
  const auto os = FromBf(out.Get());
  EXPECT_REL(os, refg, kBf16OutTol);
  // SiluMul reads fused [gate | up] rows of 2n: use rows of y with ld == 2n.
  std::vector<float> gu(size_t(rows) * 2 * n);
  for (int r = 0; r < rows; ++r) std::copy_n(y.begin() + size_t(r) * ld, 2 * n, gu.begin() + size_t(r) * 2 * n);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < n; ++i) refm[size_t(r) * n + i] = ops::Silu(gu[size_t(r) * 2 * n + i]) * gu[size_t(r) * 2 * n + n + i];
  DevBuf<float> dgu(gu);
  SiluMul(nullptr, dgu.p, out.p, rows, n);
  const auto om = FromBf(out.Get());
  EXPECT_REL(om, refm, kBf16OutTol);
}

TEST_F(CudaTest, RopeBothLayouts) {
  for (bool inter : {false, true}) {
    const int rows = 6, H = 4, hd = 64, ld = H * hd + 10;
    auto x = Randn(size_t(rows) * ld, rng);
    std::vector<int> pos = {0, 1, 17, 500, 4095, 8191};
    std::vector<float> inv(hd / 2);
    for (int i = 0; i < hd / 2; ++i) inv[i] = std::pow(500000.0f, -2.0f * i / hd);
    DevBuf<float> dx(x), dinv(inv);
    DevBuf<int> dpos(pos);
    Rope(nullptr, dx.p, ld, rows, H, hd, dpos.p, dinv.p, inter);
    std::vector<float> ref = x;
    for (int r = 0; r < rows; ++r) ops::Rope(ref.data() + size_t(r) * ld, H, hd, pos[r], inv.data(), inter);
    const auto o = dx.Get();
    EXPECT_REL(o, ref, 1e-5);
  }
}

TEST_F(CudaTest, EmbedAndArgmax) {
  const int vocab = 1000, dim = 48, rows = 3;
  auto e = Rounded(Randn(size_t(vocab) * dim, rng));
  std::vector<int> tok = {5, 999, 0};
  DevBuf<bf16> de(ToBf(e));
  DevBuf<int> dt(tok), am(rows);
  DevBuf<float> dx(size_t(rows) * dim);
  Embed(nullptr, dt.p, de.p, dx.p, rows, dim);
  const auto x = dx.Get();
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < dim; ++i) ASSERT_EQ(x[size_t(r) * dim + i], e[size_t(tok[r]) * dim + i]);
  auto logits = Randn(size_t(rows) * vocab, rng);
  logits[700] = 50.0f, logits[900] = 50.0f;  // tie in row 0: the lower index wins
  logits[vocab + 3] = 60.0f;
  logits[2 * vocab + 999] = 70.0f;
  DevBuf<float> dl(logits);
  Argmax(nullptr, dl.p, vocab, rows, vocab, am.p);
  EXPECT_EQ(am.Get(), (std::vector<int>{700, 3, 999}));
}

TEST_F(CudaTest, CausalConvStepAndPrefill) {
  const int C = 300, K = 4, S = K - 1, slots = 3, rows = 2, L = 7, ld = C + 5;
  auto w = Randn(size_t(C) * K, rng, 0.5f), bias = Randn(C, rng);
  auto states = Randn(size_t(slots) * S * C, rng), in = Randn(size_t(L) * ld, rng);
  DevBuf<float> dw(w), db(bias), dst(states), din(in), dout(size_t(L) * C);
  std::vector<int> slot = {2, 0};
  DevBuf<int> dslot(slot);
  dout.Poison();
  CausalConvStep(nullptr, din.p, ld, rows, C, dw.p, db.p, K, dst.p, dslot.p, dout.p, C, true);
  std::vector<float> ref(size_t(rows) * C), rst = states;
  for (int r = 0; r < rows; ++r)
    ops::CausalConv(in.data() + size_t(r) * ld, ld, 1, C, w.data(), bias.data(), K, rst.data() + size_t(slot[r]) * S * C,
                    ref.data() + size_t(r) * C, C, true);
  auto o = dout.Get();
  o.resize(size_t(rows) * C);
  const auto st = dst.Get();
  EXPECT_REL(o, ref, kF32Tol);
  EXPECT_REL(st, rst, kF32Tol);
  for (int len : {L, 2}) {  // L >= K-1 and L < K-1 take different state paths
    dout.Poison();
    CausalConvPrefill(nullptr, din.p, ld, len, C, dw.p, nullptr, K, dst.p + size_t(1) * S * C, dout.p, C, false);
    std::vector<float> pref(size_t(len) * C);
    ops::CausalConv(in.data(), ld, len, C, w.data(), nullptr, K, rst.data() + size_t(1) * S * C, pref.data(), C, false);
    auto po = dout.Get();
    po.resize(size_t(len) * C);
    const auto pst = dst.Get();
    EXPECT_REL(po, pref, kF32Tol);
    EXPECT_REL(pst, rst, kF32Tol);
  }
}

}  // namespace
}  // namespace subq::cuda::test
