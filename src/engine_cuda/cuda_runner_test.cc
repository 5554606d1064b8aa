// CudaRunner against a host f32 reference forward built from the CPU ops (ops/ops.h, ops/ssd.h) on the
// same random weights (bf16-representable, so only activation rounding differs): Llama, Mamba-2 and Llamba
// (Discrete Mamba-2). Logits: relative L2 error <= 2e-2 (bf16 activations into every GEMM). Covers
// chunked prefill across SSD chunks, ragged batched decode through CUDA graphs with sequences joining and
// leaving between steps, and graph replay equal to direct launches.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "engine_cuda/cuda_runner.h"
#include "ops/cuda/test_util.h"
#include "ops/ops.h"
#include "ops/ssd.h"

namespace subq::cuda::test {
namespace {

// Logits vs the host reference: bf16 weights and GEMM inputs, and the SSD prefill's bf16 tensor-core products
// (ops/cuda/ssd_chunked.cu) feeding the decode state.
constexpr double kLogitTol = 3e-2;

struct HostModel {
  ModelConfig cfg;
  std::map<std::string, std::vector<float>> t;
  const std::vector<float>& at(const std::string& n) const { return t.at(n); }
  HostTensors View() const {
    return {[this](const std::string& n) { return t.count(n) > 0; },
            [this](const std::string& n, const std::vector<int64_t>& shape, std::vector<float>* out) -> std::string {
              auto it = t.find(n);
              if (it == t.end()) return "missing tensor " + n;
              size_t sz = 1;
              for (int64_t s : shape) sz *= s;
              if (sz != it->second.size()) return "wrong size for " + n;
              *out = it->second;
              return "";
            }};
  }
};

ModelConfig SmallConfig(const std::string& family) {
  ModelConfig c;
  c.family = family, c.vocab_size = 97, c.dim = 64, c.n_layers = 2, c.max_seq_len = 256, c.tie_embeddings = false;
  c.hidden_dim = family == "mamba2" ? 0 : 128;
  c.attn = {4, 2, 16, 10000.0f, false, {}};
  c.mamba2 = {4, 16, 16, 1, 4, 256, 1e-5f, true};
  c.dm2 = {16, 4, 4, 16, 4, 128, true};
  const MixerKind k = family == "llama" ? MixerKind::kAttention
                      : family == "mamba2" ? MixerKind::kMamba2 : MixerKind::kDiscreteMamba2;
  c.layers.assign(c.n_layers, LayerConfig{k, {}});
  return c;
}

HostModel RandomHost(const ModelConfig& c, std::mt19937& rng) {
  HostModel m{c, {}};
  auto add = [&](const std::string& n, size_t sz, float sd, float mean = 0.0f) {
    m.t[n] = Rounded(Randn(sz, rng, sd, mean));
  };
  const bool llama = c.family == "llama", m2 = c.family == "mamba2";
  const std::string pre = llama ? "model.layers." : "backbone.layers.";
  add(llama ? "model.embed_tokens.weight" : m2 ? "backbone.embeddings.weight" : "backbone.embedding.weight",
      size_t(c.vocab_size) * c.dim, 1.0f);
  add(llama ? "model.norm.weight" : m2 ? "backbone.norm_f.weight" : "backbone.final_layernorm.weight", c.dim, 0.1f, 1.0f);
  add("lm_head.weight", size_t(c.vocab_size) * c.dim, 0.2f);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = pre + std::to_string(i) + ".";
    add(p + (m2 ? "norm.weight" : "input_layernorm.weight"), c.dim, 0.1f, 1.0f);
    if (c.hidden_dim > 0) {
      add(p + "post_attention_layernorm.weight", c.dim, 0.1f, 1.0f);
      for (const char* n : {"mlp.gate_proj.weight", "mlp.up_proj.weight"}) add(p + n, size_t(c.hidden_dim) * c.dim, 0.15f);
      add(p + "mlp.down_proj.weight", size_t(c.dim) * c.hidden_dim, 0.1f);
    }
    if (llama) {
      const int q = c.attn.n_heads * c.attn.head_dim, kv = c.attn.n_kv_heads * c.attn.head_dim;
      add(p + "self_attn.q_proj.weight", size_t(q) * c.dim, 0.2f);
      add(p + "self_attn.k_proj.weight", size_t(kv) * c.dim, 0.2f);
      add(p + "self_attn.v_proj.weight", size_t(kv) * c.dim, 0.2f);
      add(p + "self_attn.o_proj.weight", size_t(c.dim) * q, 0.15f);
      continue;
    }
    const int H = m2 ? c.mamba2.n_heads : c.dm2.n_v_heads, P = m2 ? c.mamba2.head_dim : c.dm2.head_dim;
    const int N = m2 ? c.mamba2.state_size : c.dm2.d_state, G = m2 ? c.mamba2.n_groups : c.dm2.n_qk_heads;
    const int E = H * P, cd = E + 2 * G * N, rows = 2 * E + 2 * G * N + H;
    add(p + "mixer.in_proj.weight", size_t(rows) * c.dim, 0.15f);
    add(p + "mixer.out_proj.weight", size_t(c.dim) * E, 0.15f);
    add(p + "mixer.conv1d.weight", size_t(cd) * 4, 0.4f);
    add(p + "mixer.conv1d.bias", cd, 0.1f);
    add(p + "mixer.D", H, 0.3f, 1.0f);
    if (m2) {
      add(p + "mixer.dt_bias", H, 0.5f, -2.0f);
      add(p + "mixer.A_log", H, 0.3f, 1.0f);
      add(p + "mixer.norm.weight", E, 0.1f, 1.0f);
    } else {
      add(p + "mixer.z_bias", E, 0.3f, 1.0f);
    }
  }
  return m;
}

// All-position logits [L, vocab] of a fresh sequence, f32 on the host, token-by-token recurrences.
std::vector<float> HostLogits(const HostModel& m, const std::vector<int>& tok) {
  const ModelConfig& c = m.cfg;
  const int L = static_cast<int>(tok.size()), D = c.dim;
  const bool llama = c.family == "llama", m2 = c.family == "mamba2";
  const std::string pre = llama ? "model.layers." : "backbone.layers.";
  const Threads th{1};
  auto lin = [&](const float* x, int M, const std::string& n, int rows, int cols, float* y, bool acc = false) {
    ops::Linear(th, x, M, ops::Weight::F32(m.at(n).data(), rows, cols), y, acc);
  };
  std::vector<float> x(size_t(L) * D), u(size_t(L) * D);
  const auto& emb = m.at(llama ? "model.embed_tokens.weight" : m2 ? "backbone.embeddings.weight" : "backbone.embedding.weight");
  for (int t = 0; t < L; ++t) std::copy_n(emb.begin() + size_t(tok[t]) * D, D, x.begin() + size_t(t) * D);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = pre + std::to_string(i) + ".";
    ops::RmsNorm(x.data(), m.at(p + (m2 ? "norm.weight" : "input_layernorm.weight")).data(), u.data(), L, D, c.norm_eps);
    if (llama) {
      const int H = c.attn.n_heads, KV = c.attn.n_kv_heads, hd = c.attn.head_dim, q = H * hd, kv = KV * hd;
      std::vector<float> Q(size_t(L) * q), K(size_t(L) * kv), V(size_t(L) * kv), O(size_t(L) * q), inv(hd / 2);
      for (int j = 0; j < hd / 2; ++j) inv[j] = std::pow(c.attn.rope_theta, -2.0f * j / hd);
      lin(u.data(), L, p + "self_attn.q_proj.weight", q, D, Q.data());
      lin(u.data(), L, p + "self_attn.k_proj.weight", kv, D, K.data());
      lin(u.data(), L, p + "self_attn.v_proj.weight", kv, D, V.data());
      for (int t = 0; t < L; ++t) {
        ops::Rope(Q.data() + size_t(t) * q, H, hd, t, inv.data(), false);
        ops::Rope(K.data() + size_t(t) * kv, KV, hd, t, inv.data(), false);
      }
      std::vector<float> scratch(ops::AttentionScratchFloats(hd));
      ops::AttendCausal(Q.data(), q, L, H, KV, hd, K.data(), V.data(), kv, 0, O.data(), q, scratch.data());
      lin(O.data(), L, p + "self_attn.o_proj.weight", D, q, x.data(), true);
    } else {
      const int H = m2 ? c.mamba2.n_heads : c.dm2.n_v_heads, P = m2 ? c.mamba2.head_dim : c.dm2.head_dim;
      const int N = m2 ? c.mamba2.state_size : c.dm2.d_state, G = m2 ? c.mamba2.n_groups : c.dm2.n_qk_heads;
      const int E = H * P, cd = E + 2 * G * N, rows = 2 * E + 2 * G * N + H;
      std::vector<float> proj(size_t(L) * rows), xbc(size_t(L) * cd), conv_state(size_t(3) * cd, 0.0f);
      std::vector<float> S(size_t(H) * P * N, 0.0f), y(size_t(L) * E);
      lin(u.data(), L, p + "mixer.in_proj.weight", rows, D, proj.data());
      const int xo = m2 ? E : 0, zo = m2 ? 0 : cd, dto = m2 ? E + cd : cd + E;
      ops::CausalConv(proj.data() + xo, rows, L, cd, m.at(p + "mixer.conv1d.weight").data(),
                      m.at(p + "mixer.conv1d.bias").data(), 4, conv_state.data(), xbc.data(), cd, m2);
      const auto& Dv = m.at(p + "mixer.D");
      for (int t = 0; t < L; ++t) {
        std::vector<float> X(E), loga(H);
        const float* xr = xbc.data() + size_t(t) * cd;
        for (int h = 0; h < H; ++h) {
          const float raw = proj[size_t(t) * rows + dto + h];
          float xs = 1.0f;
          if (m2) {
            xs = ops::Softplus(raw + m.at(p + "mixer.dt_bias")[h]);
            loga[h] = -std::exp(m.at(p + "mixer.A_log")[h]) * xs;
          } else {
            loga[h] = -ops::Softplus(raw);
          }
          for (int j = 0; j < P; ++j) X[h * P + j] = xr[h * P + j] * xs;
        }
        float* yr = y.data() + size_t(t) * E;
        ops::SsdStep({H, P, N, G}, X.data(), xr + E, xr + E + G * N, loga.data(), S.data(), yr);
        for (int h = 0; h < H; ++h)
          for (int j = 0; j < P; ++j) yr[h * P + j] += Dv[h] * xr[h * P + j];
      }
      if (m2) {
        ops::GatedRmsNorm(y.data(), E, proj.data() + zo, rows, m.at(p + "mixer.norm.weight").data(), L, E, E / G,
                          c.mamba2.norm_eps);
      } else {
        const auto& zb = m.at(p + "mixer.z_bias");
        for (int t = 0; t < L; ++t)
          for (int j = 0; j < E; ++j) y[size_t(t) * E + j] *= ops::Silu(proj[size_t(t) * rows + zo + j] + zb[j]);
      }
      lin(y.data(), L, p + "mixer.out_proj.weight", D, E, x.data(), true);
    }
    if (c.hidden_dim > 0) {
      const int Hd = c.hidden_dim;
      std::vector<float> gt(size_t(L) * Hd), up(size_t(L) * Hd);
      ops::RmsNorm(x.data(), m.at(p + "post_attention_layernorm.weight").data(), u.data(), L, D, c.norm_eps);
      lin(u.data(), L, p + "mlp.gate_proj.weight", Hd, D, gt.data());
      lin(u.data(), L, p + "mlp.up_proj.weight", Hd, D, up.data());
      ops::SiluMul(gt.data(), up.data(), int64_t(L) * Hd);
      lin(gt.data(), L, p + "mlp.down_proj.weight", D, Hd, x.data(), true);
    }
  }
  ops::RmsNorm(x.data(), m.at(llama ? "model.norm.weight" : m2 ? "backbone.norm_f.weight" : "backbone.final_layernorm.weight").data(),
               u.data(), L, D, c.norm_eps);
  std::vector<float> logits(size_t(L) * c.vocab_size);
  lin(u.data(), L, "lm_head.weight", c.vocab_size, D, logits.data());
  return logits;
}

std::vector<float> Row(const std::vector<float>& v, int r, int n) {
  return std::vector<float>(v.begin() + size_t(r) * n, v.begin() + size_t(r + 1) * n);
}

class RunnerTest : public CudaTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(RunnerTest, LogitsMatchHostReference) {
  const HostModel hm = RandomHost(SmallConfig(GetParam()), rng);
  const int V = hm.cfg.vocab_size;
  std::string err;
  auto model = CudaModel::Upload(hm.cfg, hm.View(), &err);
  ASSERT_TRUE(model) << err;
  CudaRunner run(*model, /*max_slots=*/5, /*max_context=*/256, /*max_rows=*/96);
  std::uniform_int_distribution<int> tokd(0, V - 1);
  // Sequences in slots 3, 0, 4 with prompts of 150 (two prefill pieces, SSD chunks 128), 5 and 70 tokens.
  std::vector<std::vector<int>> seqs(5);
  for (int s : {3, 0, 4}) {
    const int n = s == 3 ? 150 : s == 0 ? 5 : 70;
    for (int i = 0; i < n; ++i) seqs[s].push_back(tokd(rng));
    std::vector<float> lg;
    run.Prefill(s, seqs[s].data(), n, &lg);
    const auto ref = Row(HostLogits(hm, seqs[s]), n - 1, V);
    EXPECT_REL(lg, ref, kLogitTol);
  }
  // Decode steps over changing batches: {3, 0, 4}, then 0 leaves, then slot 1 joins (after its prefill).
  const std::vector<std::vector<int>> steps = {{3, 0, 4}, {4, 3}, {4, 3}, {1, 4, 3}};
  for (size_t st = 0; st < steps.size(); ++st) {
    std::vector<int> slots = steps[st];
    if (st == 3) {
      for (int i = 0; i < 9; ++i) seqs[1].push_back(tokd(rng));
      run.Prefill(1, seqs[1].data(), 9);
    }
    std::vector<int> tok, next(slots.size());
    for (int s : slots) tok.push_back(tokd(rng)), seqs[s].push_back(tok.back());
    std::vector<float> lg;
    run.Decode(static_cast<int>(slots.size()), slots.data(), tok.data(), next.data(), &lg);
    for (size_t r = 0; r < slots.size(); ++r) {
      const auto ref = Row(HostLogits(hm, seqs[slots[r]]), static_cast<int>(seqs[slots[r]].size()) - 1, V);
      const auto out = Row(lg, static_cast<int>(r), V);
      EXPECT_REL(out, ref, kLogitTol);
      EXPECT_EQ(next[r], std::max_element(out.begin(), out.end()) - out.begin());
    }
  }
}

TEST_P(RunnerTest, GraphReplayEqualsDirectLaunch) {
  const HostModel hm = RandomHost(SmallConfig(GetParam()), rng);
  std::string err;
  auto model = CudaModel::Upload(hm.cfg, hm.View(), &err);
  ASSERT_TRUE(model) << err;
  CudaRunner a(*model, 3, 64), b(*model, 3, 64);
  b.use_graphs = false;
  std::vector<int> prompt = {1, 2, 3, 4, 5, 6, 7}, slots = {2, 0}, tok = {8, 9}, na(2), nb(2);
  for (CudaRunner* r : {&a, &b})
    for (int s : slots) r->Prefill(s, prompt.data(), static_cast<int>(prompt.size()));
  for (int step = 0; step < 5; ++step) {
    std::vector<float> la, lb;
    a.Decode(2, slots.data(), tok.data(), na.data(), &la);
    b.Decode(2, slots.data(), tok.data(), nb.data(), &lb);
    ASSERT_EQ(la, lb) << "step " << step;
    tok = na;
  }
}

// Device sampling (temperature, top-k, top-p) draws from each slot's seeded stream: graph replay and direct
// launches pick the same tokens, and re-seeding the slot repeats them.
TEST_P(RunnerTest, SeededSamplingIsReproducible) {
  const HostModel hm = RandomHost(SmallConfig(GetParam()), rng);
  std::string err;
  auto model = CudaModel::Upload(hm.cfg, hm.View(), &err);
  ASSERT_TRUE(model) << err;
  CudaRunner a(*model, 3, 64), b(*model, 3, 64);
  b.use_graphs = false;
  const SamplerConfig sc{1.3f, 40, 0.95f, 42};
  std::vector<int> prompt = {1, 2, 3, 4, 5}, slots = {2, 0};
  std::vector<std::vector<int>> picks;
  for (int round = 0; round < 2; ++round)
    for (CudaRunner* r : {&a, &b}) {
      std::vector<int> tok(2), next(2), seq;
      for (int s : slots) {
        r->Reset(s);
        r->SetSampler(s, sc);
        tok[s == 2 ? 0 : 1] = r->Prefill(s, prompt.data(), static_cast<int>(prompt.size()));
      }
      for (int step = 0; step < 8; ++step) {
        r->Decode(2, slots.data(), tok.data(), next.data());
        for (int t : next) ASSERT_TRUE(t >= 0 && t < hm.cfg.vocab_size) << t;
        seq.insert(seq.end(), next.begin(), next.end());
        tok = next;
      }
      picks.push_back(seq);
    }
  for (size_t i = 1; i < picks.size(); ++i) EXPECT_EQ(picks[i], picks[0]) << "run " << i;
}

// Slot snapshots (cuda_snapshot.cc, the serve prefix cache): a snapshot restored into another slot holding a
// longer sequence, or back into its own slot after it decoded on, continues bit-identically (same logits,
// same greedy tokens) as the slot did right after the snapshot; its size is the slot's used state bytes.
TEST_P(RunnerTest, SnapshotRestoreContinuesExactly) {
  const HostModel hm = RandomHost(SmallConfig(GetParam()), rng);
  const int V = hm.cfg.vocab_size;
  std::string err;
  auto model = CudaModel::Upload(hm.cfg, hm.View(), &err);
  ASSERT_TRUE(model) << err;
  CudaRunner run(*model, 3, 256, 64);
  std::uniform_int_distribution<int> tokd(0, V - 1);
  std::vector<int> prompt(100), other(150);
  for (int& t : prompt) t = tokd(rng);
  for (int& t : other) t = tokd(rng);
  std::vector<float> first;
  const int t0 = run.Prefill(0, prompt.data(), 100, &first);
  auto snap = run.Snapshot(0);
  ASSERT_NE(snap.data, nullptr);
  EXPECT_EQ(snap.pos, 100);
  EXPECT_EQ(snap.bytes, run.StateBytesUsed(0));
  auto decode = [&](int slot, int tok) {  // 6 greedy steps: logits of each
    std::vector<std::vector<float>> out;
    for (int step = 0; step < 6; ++step) {
      std::vector<float> lg;
      int next = 0;
      run.Decode(1, &slot, &tok, &next, &lg);
      out.push_back(lg);
      tok = next;
    }
    return out;
  };
  const auto ref = decode(0, t0);
  EXPECT_EQ(run.pos(0), 106);
  run.Prefill(2, other.data(), 150);  // slot 2 holds a longer, different sequence
  run.Restore(snap, 2);
  EXPECT_EQ(run.pos(2), 100);
  EXPECT_EQ(decode(2, t0), ref);
  run.Restore(snap, 0);  // back into its own slot, after it moved on
  EXPECT_EQ(run.pos(0), 100);
  EXPECT_EQ(decode(0, t0), ref);
  run.Free(snap);
  EXPECT_EQ(snap.data, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Families, RunnerTest, ::testing::Values("llama", "mamba2", "llamba"));

}  // namespace
}  // namespace subq::cuda::test
