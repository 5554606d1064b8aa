// Mamba-3 and Gated DeltaNet on CUDA against the CPU mixers' own Step / Prefill (mixers/mamba3.cc,
// mixers/gated_deltanet.cc: the scalar reference of each recurrence), batched decode rows in shuffled
// slots and one sequence's prefill from a nonzero state; device sampling against SampleWithUniform
// (model/sampler.cc). Tolerances (relative L2): f32 states 1e-4 (f32 math in another order, fast exp),
// bf16 outputs 8e-3 (one bf16 rounding), f32 outputs 1e-4.
#include <algorithm>
#include <cmath>

#include "mixers/gated_deltanet.h"
#include "mixers/mamba3.h"
#include "model/sampler.h"
#include "ops/cuda/test_util.h"

namespace subq::cuda::test {
namespace {

constexpr double kStateTol = 1e-4, kBf16OutTol = 8e-3;

Tensor RandT(std::vector<int64_t> shape, std::mt19937& rng, float sd, float mean = 0.0f) {
  Tensor t(std::move(shape));
  t.data = Randn(t.data.size(), rng, sd, mean);
  return t;
}

struct M3Case {
  int H, P, N, G, R;
  bool output_norm;
};

class Mamba3CudaTest : public CudaTest, public ::testing::WithParamInterface<M3Case> {};

TEST_P(Mamba3CudaTest, DecodeRowsAndPrefillMatchCpuMixer) {
  const M3Case k = GetParam();
  Mamba3Config c;
  c.n_heads = k.H, c.head_dim = k.P, c.state_size = k.N, c.n_groups = k.G, c.mimo_rank = k.R, c.chunk_size = 8;
  c.output_norm = k.output_norm;
  const int dim = 16, rows_w = Mamba3Mixer::InProjRows(c, dim), H = k.H, P = k.P, N = k.N, R = k.R, di = H * P;
  const int NA = c.n_angles();
  const bool mimo = R > 1;
  Mamba3Weights w;
  w.dt_bias = RandT({H}, rng, 0.5f, -2.0f), w.D = RandT({H}, rng, 0.3f, 1.0f);
  w.B_norm = RandT({N}, rng, 0.1f, 1.0f), w.C_norm = RandT({N}, rng, 0.1f, 1.0f);
  w.B_bias = RandT({H, R, N}, rng, 0.3f, 1.0f), w.C_bias = RandT({H, R, N}, rng, 0.3f, 1.0f);
  if (mimo) {
    w.mimo_x = RandT({H, R, P}, rng, 0.2f, 1.0f / R), w.mimo_z = RandT({H, R, P}, rng, 0.2f, 1.0f);
    w.mimo_o = RandT({H, R, P}, rng, 0.2f, 1.0f / R);
  }
  if (k.output_norm) w.norm = RandT({di}, rng, 0.1f, 1.0f);
  const Mamba3Mixer cpu(c, dim, w);
  DevBuf<float> ddt(w.dt_bias.data), dD(w.D.data), dbn(w.B_norm.data), dcn(w.C_norm.data), dbb(w.B_bias.data),
      dcb(w.C_bias.data), dmx(mimo ? w.mimo_x.data : std::vector<float>{0}), dmz(mimo ? w.mimo_z.data : std::vector<float>{0}),
      dmo(mimo ? w.mimo_o.data : std::vector<float>{0}), dnorm(k.output_norm ? w.norm.data : std::vector<float>{0});
  Mamba3Params p;
  p.H = H, p.P = P, p.N = N, p.G = k.G, p.R = R, p.NA = NA, p.half_split = mimo;
  p.dt_bias = ddt.p, p.D = dD.p, p.B_norm = dbn.p, p.C_norm = dcn.p, p.B_bias = dbb.p, p.C_bias = dcb.p;
  if (mimo) p.mimo_x = dmx.p, p.mimo_z = dmz.p, p.mimo_o = dmo.p;
  if (k.output_norm) p.out_norm = dnorm.p;

  // Random starting states in every slot (CPU copies of each).
  const int slots = 22;
  std::vector<subq::Mamba3State> ref;
  for (int s = 0; s < slots; ++s) {
    ref.emplace_back(c);
    ref.back().phase.data = Randn(size_t(H) * NA, rng, 1.0f, 3.0f);
    ref.back().ssm.data = Randn(size_t(H) * P * N, rng, 0.3f);
    ref.back().k_last.data = Randn(size_t(R) * H * N, rng, 0.5f);
    ref.back().x_last.data = Randn(size_t(di), rng, 0.5f);
  }
  auto pool = [&](auto field, size_t per) {
    std::vector<float> all;
    for (auto& s : ref) all.insert(all.end(), (s.*field).data.begin(), (s.*field).data.end());
    EXPECT_EQ(all.size(), per * slots);
    return all;
  };
  DevBuf<float> dph(pool(&subq::Mamba3State::phase, size_t(H) * NA)), dssm(pool(&subq::Mamba3State::ssm, size_t(H) * P * N)),
      dkl(pool(&subq::Mamba3State::k_last, size_t(R) * H * N)), dxl(pool(&subq::Mamba3State::x_last, di));
  const Mamba3Pools st{dph.p, dssm.p, dkl.p, dxl.p};
  auto compare_states = [&](const char* what) {
    const auto ph = dph.Get(), ssm = dssm.Get(), kl = dkl.Get(), xl = dxl.Get();
    SCOPED_TRACE(what);
    EXPECT_REL(ph, pool(&subq::Mamba3State::phase, size_t(H) * NA), kStateTol);
    EXPECT_REL(ssm, pool(&subq::Mamba3State::ssm, size_t(H) * P * N), kStateTol);
    EXPECT_REL(kl, pool(&subq::Mamba3State::k_last, size_t(R) * H * N), kStateTol);
    EXPECT_REL(xl, pool(&subq::Mamba3State::x_last, di), kStateTol);
  };
  Mamba3Mixer::Tokens t;
  // Decode: 3 rows (one block per head tile) and 20 rows (4 state rows per thread), shuffled slots.
  for (int rows : {3, 20}) {
    std::vector<int> slot(rows);
    for (int r = 0; r < rows; ++r) slot[r] = (7 * r + 3) % slots;
    auto proj = Randn(size_t(rows) * rows_w, rng);
    DevBuf<float> dproj(proj), scratch(Mamba3ScratchFloats(p, rows));
    DevBuf<int> dslot(slot);
    DevBuf<bf16> out(size_t(rows) * di);
    out.Poison();
    Mamba3Forward(nullptr, p, rows, 1, dproj.p, rows_w, st, dslot.p, out.p, scratch.p);
    std::vector<float> want(size_t(rows) * di);
    for (int r = 0; r < rows; ++r) {
      cpu.PrepareRows(proj.data() + size_t(r) * rows_w, 1, ref[slot[r]].phase.ptr(), &t);
      cpu.Step(t, ref[slot[r]], want.data() + size_t(r) * di);
    }
    const auto o = FromBf(out.Get());
    EXPECT_REL(o, want, kBf16OutTol);
    compare_states(rows == 3 ? "decode 3 rows" : "decode 20 rows");
  }
  // Prefill: 37 tokens (5 CPU chunks of 8, the last partial) of the sequence in slot 5.
  const int L = 37;
  auto proj = Randn(size_t(L) * rows_w, rng);
  std::vector<int> slot(L, 5);
  DevBuf<float> dproj(proj), scratch(Mamba3ScratchFloats(p, L));
  DevBuf<int> dslot(slot);
  DevBuf<bf16> out(size_t(L) * di);
  out.Poison();
  Mamba3Forward(nullptr, p, L, L, dproj.p, rows_w, st, dslot.p, out.p, scratch.p);
  std::vector<float> want(size_t(L) * di);
  cpu.PrepareRows(proj.data(), L, ref[5].phase.ptr(), &t);
  cpu.Prefill(t, ref[5], want.data());
  const auto o = FromBf(out.Get());
  EXPECT_REL(o, want, kBf16OutTol);
  compare_states("prefill");
}

INSTANTIATE_TEST_SUITE_P(Shapes, Mamba3CudaTest,
                         ::testing::Values(M3Case{4, 8, 8, 1, 1, false}, M3Case{4, 16, 32, 2, 1, true},
                                           M3Case{2, 32, 16, 1, 2, false}, M3Case{4, 8, 64, 2, 4, true},
                                           M3Case{2, 64, 128, 1, 1, false}));

struct GdnCase {
  int Hk, Hv, dk, dv;
};
class GdnCudaTest : public CudaTest, public ::testing::WithParamInterface<GdnCase> {};

// The CPU conv states [K-1, C] of q, k, v side by side as the GPU's fused [K-1, 2Ck + Cv]; S transposed.
std::vector<float> FusedConv(const std::vector<GatedDeltaNetState>& st, int K) {
  std::vector<float> all;
  for (const auto& s : st)
    for (int j = 0; j < K - 1; ++j)
      for (const Tensor* t : {&s.q_conv, &s.k_conv, &s.v_conv}) {
        const int C = static_cast<int>(t->shape[1]);
        all.insert(all.end(), t->data.begin() + size_t(j) * C, t->data.begin() + size_t(j + 1) * C);
      }
  return all;
}
std::vector<float> TransposedS(const std::vector<GatedDeltaNetState>& st, int Hv, int dk, int dv) {
  std::vector<float> all;
  for (const auto& s : st)
    for (int h = 0; h < Hv; ++h)
      for (int b = 0; b < dv; ++b)
        for (int a = 0; a < dk; ++a) all.push_back(s.S.data[(size_t(h) * dk + a) * dv + b]);
  return all;
}

TEST_P(GdnCudaTest, ConvDeltaRuleAndNormGateMatchCpuMixer) {
  const GdnCase k = GetParam();
  const GatedDeltaNetConfig c{k.Hk, k.Hv, k.dk, k.dv, 4, 8, 1e-5f};
  const int dim = 16, K = 4, Ck = k.Hk * k.dk, Cv = k.Hv * k.dv, Hv = k.Hv, cd = 2 * Ck + Cv;
  const int ld = 2 * Ck + 2 * Cv + 2 * Hv;  // GPU projection row: [q | k | v | g | a | b]
  GatedDeltaNetWeights w;
  w.q_conv = RandT({Ck, 1, K}, rng, 0.4f), w.k_conv = RandT({Ck, 1, K}, rng, 0.4f), w.v_conv = RandT({Cv, 1, K}, rng, 0.4f);
  w.A_log = RandT({Hv}, rng, 0.3f, 0.5f), w.dt_bias = RandT({Hv}, rng, 0.3f, -2.0f), w.o_norm = RandT({k.dv}, rng, 0.1f, 1.0f);
  const GatedDeltaNetMixer cpu(c, dim, w);
  std::vector<float> conv_w;
  for (const Tensor* t : {&w.q_conv, &w.k_conv, &w.v_conv}) conv_w.insert(conv_w.end(), t->data.begin(), t->data.end());
  DevBuf<float> dconv(conv_w), dA(w.A_log.data), ddtb(w.dt_bias.data), dnorm(w.o_norm.data);
  const GdnParams p{k.Hk, k.Hv, k.dk, k.dv, dA.p, ddtb.p};
  const int slots = 21;
  std::vector<GatedDeltaNetState> ref;
  for (int s = 0; s < slots; ++s) {
    ref.emplace_back(c);
    for (Tensor* t : {&ref.back().q_conv, &ref.back().k_conv, &ref.back().v_conv, &ref.back().S})
      t->data = Randn(t->data.size(), rng, 0.3f);
  }
  DevBuf<float> dcs(FusedConv(ref, K)), dS(TransposedS(ref, Hv, k.dk, k.dv));
  auto compare_states = [&](const char* what) {
    SCOPED_TRACE(what);
    const auto cs = dcs.Get(), S = dS.Get();
    EXPECT_REL(cs, FusedConv(ref, K), kStateTol);
    EXPECT_REL(S, TransposedS(ref, Hv, k.dk, k.dv), kStateTol);
  };
  // Runs rows of proj (GPU layout) for sequences of seq_len rows; CPU: Prepare + Step/Prefill + NormGate.
  auto run = [&](int rows, int seq_len, const std::vector<int>& slot) {
    auto proj = Randn(size_t(rows) * ld, rng);
    DevBuf<float> dproj(proj), xqkv(size_t(rows) * cd), o(size_t(rows) * Cv);
    DevBuf<int> dslot(slot);
    DevBuf<bf16> out(size_t(rows) * Cv);
    out.Poison();
    if (seq_len == 1)
      CausalConvStep(nullptr, dproj.p, ld, rows, cd, dconv.p, nullptr, K, dcs.p, dslot.p, xqkv.p, cd, true);
    else
      CausalConvPrefill(nullptr, dproj.p, ld, rows, cd, dconv.p, nullptr, K, dcs.p + size_t(slot[0]) * (K - 1) * cd,
                        xqkv.p, cd, true);
    GdnForward(nullptr, p, rows, seq_len, xqkv.p, cd, dproj.p + cd + Cv, ld, dS.p, dslot.p, o.p, Cv);
    const auto raw = o.Get();
    RmsNormSiluGate(nullptr, o.p, Cv, dproj.p + cd, ld, dnorm.p, out.p, rows, Cv, k.dv, c.norm_eps);
    // CPU: the same rows split into the mixer's six projections.
    std::vector<float> q(size_t(rows) * Ck), kk(q.size()), v(size_t(rows) * Cv), g(v.size()), a(size_t(rows) * Hv), b(a.size());
    for (int r = 0; r < rows; ++r) {
      const float* row = proj.data() + size_t(r) * ld;
      std::copy_n(row, Ck, q.begin() + size_t(r) * Ck);
      std::copy_n(row + Ck, Ck, kk.begin() + size_t(r) * Ck);
      std::copy_n(row + 2 * Ck, Cv, v.begin() + size_t(r) * Cv);
      std::copy_n(row + cd, Cv, g.begin() + size_t(r) * Cv);
      std::copy_n(row + cd + Cv, Hv, a.begin() + size_t(r) * Hv);
      std::copy_n(row + cd + Cv + Hv, Hv, b.begin() + size_t(r) * Hv);
    }
    const GatedDeltaNetMixer::Projected pr{q.data(), kk.data(), v.data(), g.data(), a.data(), b.data()};
    std::vector<float> want_raw(size_t(rows) * Cv), want(want_raw.size());
    GatedDeltaNetMixer::Tokens t;
    for (int r0 = 0; r0 < rows; r0 += seq_len) {
      GatedDeltaNetState& s = ref[slot[r0]];
      cpu.Prepare(pr, r0, seq_len, &s, &t);
      float* os = want_raw.data() + size_t(r0) * Cv;
      if (seq_len == 1) cpu.Step(t, s, os);
      else cpu.Prefill(t, s, os);
      std::copy_n(os, size_t(seq_len) * Cv, want.begin() + size_t(r0) * Cv);
      cpu.NormGate(t, want.data() + size_t(r0) * Cv);
    }
    EXPECT_REL(raw, want_raw, kStateTol);
    const auto og = FromBf(out.Get());
    EXPECT_REL(og, want, kBf16OutTol);
  };
  for (int rows : {3, 20}) {
    std::vector<int> slot(rows);
    for (int r = 0; r < rows; ++r) slot[r] = (5 * r + 2) % slots;
    run(rows, 1, slot);
    compare_states(rows == 3 ? "decode 3 rows" : "decode 20 rows");
  }
  run(29, 29, std::vector<int>(29, 4));  // 4 CPU chunks of 8, the last partial
  compare_states("prefill");
}

INSTANTIATE_TEST_SUITE_P(Shapes, GdnCudaTest,
                         ::testing::Values(GdnCase{2, 4, 8, 8}, GdnCase{1, 2, 16, 12}, GdnCase{2, 2, 64, 32},
                                           GdnCase{1, 2, 128, 128}));

TEST_F(CudaTest, ScatterHeadsReplacesKeptHeads) {
  const int rows = 3, hd = 8, H = 5, ld = H * hd;
  std::vector<int> heads = {3, 0};
  auto att = Rounded(Randn(size_t(rows) * 2 * hd, rng)), y = Randn(size_t(rows) * ld, rng);
  DevBuf<bf16> da(ToBf(att));
  DevBuf<float> dy(y);
  DevBuf<int> dh(heads);
  ScatterHeads(nullptr, da.p, 2 * hd, rows, dh.p, 2, hd, dy.p, ld);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 2; ++k)
      for (int i = 0; i < hd; ++i) y[size_t(r) * ld + heads[k] * hd + i] = att[size_t(r) * 2 * hd + k * hd + i];
  EXPECT_EQ(dy.Get(), y);
}

// Device picks equal SampleWithUniform's for the same uniform draw in at least 99% of rows; any other
// pick is the CPU pick's neighbour in descending-logit order (the draw or the top-p cut within float
// rounding of a boundary: the GPU sums the mass in f32, the CPU in f64). Greedy rows always agree.
TEST_F(CudaTest, SampleTokensMatchesCpuSampler) {
  struct Cfg {
    float t, p;
    int k;
  };
  const std::vector<Cfg> cfgs = {{0.0f, 1.0f, 0}, {1.0f, 1.0f, 0}, {0.8f, 0.9f, 0}, {1.2f, 1.0f, 20},
                                 {0.7f, 0.5f, 50}, {2.0f, 0.3f, 0}};
  for (int vocab : {50, 5003}) {
    const int rows = 96;
    int agree = 0, total = 0;
    for (const Cfg& cf : cfgs) {
      auto logits = Randn(size_t(rows) * vocab, rng, 2.0f);
      std::vector<float> temp(rows, cf.t), top_p(rows, cf.p), u(rows);
      std::vector<int> top_k(rows, cf.k);
      std::uniform_real_distribution<float> ud(0.0f, 1.0f);
      for (float& x : u) x = ud(rng);
      DevBuf<float> dl(logits), dt(temp), dp(top_p), du(u);
      DevBuf<int> dk(top_k), dout(rows);
      SampleTokens(nullptr, dl.p, vocab, rows, vocab, dt.p, dp.p, dk.p, du.p, dout.p);
      const auto got = dout.Get();
      std::vector<int> idx;
      for (int r = 0; r < rows; ++r) {
        const float* orig = logits.data() + size_t(r) * vocab;
        std::vector<float> row(orig, orig + vocab);
        const int want = SampleWithUniform({cf.t, cf.k, cf.p, 0}, row.data(), vocab, u[r], &idx);
        ++total;
        if (got[r] == want) {
          ++agree;
          continue;
        }
        ASSERT_GT(cf.t, 0.0f) << "greedy pick " << got[r] << " differs from " << want;
        ASSERT_TRUE(got[r] >= 0 && got[r] < vocab) << got[r];
        auto rank = [&](int tok) {  // position in descending-logit order
          int n = 0;
          for (int i = 0; i < vocab; ++i) n += orig[i] > orig[tok];
          return n;
        };
        EXPECT_LE(std::abs(rank(got[r]) - rank(want)), 1) << "vocab " << vocab << " row " << r;
      }
    }
    std::printf("  vocab %d: %d of %d device samples equal the CPU's\n", vocab, agree, total);
    EXPECT_GE(agree, total * 99 / 100);
  }
}

}  // namespace
}  // namespace subq::cuda::test
