// Gated DeltaNet mixer: step, chunked WY prefill and materialized mixing matrix (gated_deltanet.h,
// SPEC section 5). Written here because no CPU library offers the gated delta rule.
#include "mixers/gated_deltanet.h"

#include <algorithm>
#include <cmath>

#include "mixers/mixers.h"
#include "model/schema.h"
#include "ops/ops.h"

namespace subq {
namespace {

constexpr float kL2Eps = 1e-6f;

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// x / sqrt(sum x^2 + eps) over rows of length n (fla l2norm).
void L2NormRows(float* x, int rows, int n) {
  for (int r = 0; r < rows; ++r) {
    float* v = x + static_cast<size_t>(r) * n;
    double ss = 0.0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(v[i]) * v[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss) + kL2Eps);
    for (int i = 0; i < n; ++i) v[i] *= inv;
  }
}

// Depthwise causal conv + SiLU over x [L, C] in place; `hist` [K-1, C] holds the previous inputs
// (oldest first) and is advanced when `advance`. w: [C, 1, K].
void CausalConvSilu(float* x, int L, int C, int K, const float* w, float* hist, bool advance, std::vector<float>& buf) {
  buf.resize(static_cast<size_t>(K - 1 + L) * C);  // [K-1+L, C]
  std::copy_n(hist, static_cast<size_t>(K - 1) * C, buf.begin());
  std::copy_n(x, static_cast<size_t>(L) * C, buf.begin() + static_cast<size_t>(K - 1) * C);
  for (int l = 0; l < L; ++l)
    for (int c = 0; c < C; ++c) {
      float acc = 0.0f;
      for (int j = 0; j < K; ++j) acc += w[static_cast<size_t>(c) * K + j] * buf[static_cast<size_t>(l + j) * C + c];
      x[static_cast<size_t>(l) * C + c] = ops::Silu(acc);
    }
  if (advance) std::copy_n(buf.begin() + static_cast<size_t>(L) * C, static_cast<size_t>(K - 1) * C, hist);
}

Status CheckShape(const char* name, const Tensor& t, const std::vector<int64_t>& want) {
  if (t.shape != want)
    return Errorf("gated_deltanet: tensor '{}' has shape {}, expected {}", name, ShapeStr(t.shape), ShapeStr(want));
  return Status::Ok();
}

}  // namespace

Status GatedDeltaNetMixer::ValidateConfig(const GatedDeltaNetConfig& c, int d_model) {
  if (c.n_qk_heads <= 0 || c.n_v_heads <= 0 || c.head_k_dim <= 0 || c.head_v_dim <= 0 || c.conv_kernel <= 0 ||
      d_model <= 0)
    return Errorf("gated_deltanet: bad dims (qk heads {}, v heads {}, d_k {}, d_v {}, conv {}, d_model {})",
                  c.n_qk_heads, c.n_v_heads, c.head_k_dim, c.head_v_dim, c.conv_kernel, d_model);
  if (c.n_v_heads % c.n_qk_heads != 0)
    return Errorf("gated_deltanet: n_v_heads {} not a multiple of n_qk_heads {}", c.n_v_heads, c.n_qk_heads);
  return Status::Ok();
}

Status GatedDeltaNetMixer::Validate(const GatedDeltaNetConfig& c, int d, const GatedDeltaNetWeights& w) {
  SUBQ_RETURN_IF_ERROR(ValidateConfig(c, d));
  const int64_t Ck = c.n_qk_heads * c.head_k_dim, Cv = c.n_v_heads * c.head_v_dim, Hv = c.n_v_heads, K = c.conv_kernel;
  SUBQ_RETURN_IF_ERROR(CheckShape("q_proj.weight", w.q_proj, {Ck, d}));
  SUBQ_RETURN_IF_ERROR(CheckShape("k_proj.weight", w.k_proj, {Ck, d}));
  SUBQ_RETURN_IF_ERROR(CheckShape("v_proj.weight", w.v_proj, {Cv, d}));
  SUBQ_RETURN_IF_ERROR(CheckShape("a_proj.weight", w.a_proj, {Hv, d}));
  SUBQ_RETURN_IF_ERROR(CheckShape("b_proj.weight", w.b_proj, {Hv, d}));
  SUBQ_RETURN_IF_ERROR(CheckShape("A_log", w.A_log, {Hv}));
  SUBQ_RETURN_IF_ERROR(CheckShape("dt_bias", w.dt_bias, {Hv}));
  SUBQ_RETURN_IF_ERROR(CheckShape("q_conv1d.weight", w.q_conv, {Ck, 1, K}));
  SUBQ_RETURN_IF_ERROR(CheckShape("k_conv1d.weight", w.k_conv, {Ck, 1, K}));
  SUBQ_RETURN_IF_ERROR(CheckShape("v_conv1d.weight", w.v_conv, {Cv, 1, K}));
  SUBQ_RETURN_IF_ERROR(CheckShape("g_proj.weight", w.g_proj, {Cv, d}));
  SUBQ_RETURN_IF_ERROR(CheckShape("o_norm.weight", w.o_norm, {c.head_v_dim}));
  SUBQ_RETURN_IF_ERROR(CheckShape("o_proj.weight", w.o_proj, {d, Cv}));
  return Status::Ok();
}

GatedDeltaNetMixer::GatedDeltaNetMixer(const GatedDeltaNetConfig& cfg, int d_model, GatedDeltaNetWeights w)
    : cfg_(cfg), d_model_(d_model), w_(std::move(w)) {}

size_t GatedDeltaNetMixer::WeightBytes() const {
  size_t n = 0;
  for (const Tensor* t : {&w_.q_proj, &w_.k_proj, &w_.v_proj, &w_.a_proj, &w_.b_proj, &w_.A_log, &w_.dt_bias,
                          &w_.q_conv, &w_.k_conv, &w_.v_conv, &w_.g_proj, &w_.o_norm, &w_.o_proj})
    n += t->data.size() * sizeof(float);
  return n;
}

size_t GatedDeltaNetMixer::ScratchFloats(int T, int) const {
  const size_t Ck = cfg_.n_qk_heads * cfg_.head_k_dim, Cv = cfg_.n_v_heads * cfg_.head_v_dim, Hv = cfg_.n_v_heads;
  return static_cast<size_t>(T) * (2 * Ck + 3 * Cv + 2 * Hv) + 8 * Arena::kAlign;
}

void GatedDeltaNetMixer::Project(const Threads& th, const float* u, int T, const Projected& p) const {
  const int Ck = cfg_.n_qk_heads * cfg_.head_k_dim, Cv = cfg_.n_v_heads * cfg_.head_v_dim, Hv = cfg_.n_v_heads;
  const int d = d_model_;
  ops::Linear(th, u, T, ops::Weight::F32(w_.q_proj.ptr(), Ck, d), p.q);     // [T, Ck]
  ops::Linear(th, u, T, ops::Weight::F32(w_.k_proj.ptr(), Ck, d), p.k);     // [T, Ck]
  ops::Linear(th, u, T, ops::Weight::F32(w_.v_proj.ptr(), Cv, d), p.v);     // [T, Cv]
  ops::Linear(th, u, T, ops::Weight::F32(w_.g_proj.ptr(), Cv, d), p.gate);  // [T, Cv]
  ops::Linear(th, u, T, ops::Weight::F32(w_.a_proj.ptr(), Hv, d), p.g);     // [T, Hv]
  ops::Linear(th, u, T, ops::Weight::F32(w_.b_proj.ptr(), Hv, d), p.beta);  // [T, Hv]
}

void GatedDeltaNetMixer::Prepare(const float* u, int L, GatedDeltaNetState* st, Tokens* t) const {
  const size_t Ck = cfg_.n_qk_heads * cfg_.head_k_dim, Cv = cfg_.n_v_heads * cfg_.head_v_dim, Hv = cfg_.n_v_heads;
  std::vector<float> buf(static_cast<size_t>(L) * (2 * Ck + 2 * Cv + 2 * Hv));
  float* b = buf.data();
  const size_t n = L;
  const Projected p{b, b + n * Ck, b + 2 * n * Ck, b + 2 * n * Ck + n * Cv, b + 2 * n * (Ck + Cv),
                    b + 2 * n * (Ck + Cv) + n * Hv};
  Project(Threads::Default(), u, L, p);
  Prepare(p, 0, L, st, t);
}

void GatedDeltaNetMixer::Prepare(const Projected& p, int row0, int L, GatedDeltaNetState* st, Tokens* t) const {
  const int Hk = cfg_.n_qk_heads, Hv = cfg_.n_v_heads, dk = cfg_.head_k_dim, dv = cfg_.head_v_dim, K = cfg_.conv_kernel;
  const int Ck = Hk * dk, Cv = Hv * dv;
  const size_t r0 = row0;
  t->L = L;
  t->q.assign(p.q + r0 * Ck, p.q + (r0 + L) * Ck);
  t->k.assign(p.k + r0 * Ck, p.k + (r0 + L) * Ck);
  t->v.assign(p.v + r0 * Cv, p.v + (r0 + L) * Cv);
  t->gate.assign(p.gate + r0 * Cv, p.gate + (r0 + L) * Cv);
  t->g.assign(p.g + r0 * Hv, p.g + (r0 + L) * Hv);
  t->beta.assign(p.beta + r0 * Hv, p.beta + (r0 + L) * Hv);
  float *hq, *hk, *hv;
  if (st) {
    hq = st->q_conv.ptr(), hk = st->k_conv.ptr(), hv = st->v_conv.ptr();
  } else {  // fresh state: zero history, left untouched (advance = false)
    t->zeros.assign(static_cast<size_t>(K - 1) * std::max(Ck, Cv), 0.0f);
    hq = hk = hv = t->zeros.data();
  }
  CausalConvSilu(t->q.data(), L, Ck, K, w_.q_conv.ptr(), hq, st != nullptr, t->conv_buf);
  CausalConvSilu(t->k.data(), L, Ck, K, w_.k_conv.ptr(), hk, st != nullptr, t->conv_buf);
  CausalConvSilu(t->v.data(), L, Cv, K, w_.v_conv.ptr(), hv, st != nullptr, t->conv_buf);
  L2NormRows(t->q.data(), L * Hk, dk);
  L2NormRows(t->k.data(), L * Hk, dk);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for (float& x : t->q) x *= scale;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < Hv; ++h) {
      const size_t i = static_cast<size_t>(l) * Hv + h;
      t->g[i] = -std::exp(w_.A_log.data[h]) * ops::Softplus(t->g[i] + w_.dt_bias.data[h]);
      t->beta[i] = Sigmoid(t->beta[i]);
    }
}

void GatedDeltaNetMixer::NormGate(const Tokens& t, float* o) const {
  const int Hv = cfg_.n_v_heads, dv = cfg_.head_v_dim, L = t.L;
  ops::RmsNorm(o, w_.o_norm.ptr(), o, L * Hv, dv, cfg_.norm_eps);  // per head
  for (size_t i = 0; i < t.gate.size(); ++i) o[i] *= ops::Silu(t.gate[i]);
}

// Per-thread token buffers: they keep their capacity, so a warm decode step does not allocate.
static GatedDeltaNetMixer::Tokens& ThreadTokens() {
  thread_local GatedDeltaNetMixer::Tokens t;
  return t;
}

void GatedDeltaNetMixer::Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx,
                                 float* out) const {
  const size_t Ck = cfg_.n_qk_heads * cfg_.head_k_dim, Cv = cfg_.n_v_heads * cfg_.head_v_dim, Hv = cfg_.n_v_heads;
  Arena& a = *ctx.arena;
  const Projected p{a.Take(T * Ck), a.Take(T * Ck), a.Take(T * Cv), a.Take(T * Cv), a.Take(T * Hv), a.Take(T * Hv)};
  float* o = a.Take(T * Cv);  // [T, Hv, dv]
  Project(ctx.threads, u, T, p);
  const int S = static_cast<int>(seqs.size());
// static: each thread always gets the same sequences, so its token buffers are warm after one step
#pragma omp parallel for num_threads(ctx.threads.n) schedule(static) if (S > 1)
  for (int i = 0; i < S; ++i) {
    const SeqSlice& s = seqs[i];
    auto& st = static_cast<GatedDeltaNetState&>(*s.state);
    Tokens& t = ThreadTokens();
    Prepare(p, s.row0, s.n, &st, &t);
    float* os = o + static_cast<size_t>(s.row0) * Cv;
    if (s.n == 1)
      Step(t, st, os);
    else
      Prefill(t, st, os);
    NormGate(t, os);
  }
  ops::Linear(ctx.threads, o, T, ops::Weight::F32(w_.o_proj.ptr(), d_model_, Cv), out);  // [T, d_model]
}

void GatedDeltaNetMixer::Step(const Tokens& t, GatedDeltaNetState& st, float* o) const {
  const int Hk = cfg_.n_qk_heads, Hv = cfg_.n_v_heads, dk = cfg_.head_k_dim, dv = cfg_.head_v_dim;
  thread_local std::vector<float> uu;
  uu.resize(dv);
  std::fill(o, o + static_cast<size_t>(Hv) * dv, 0.0f);  // [Hv, dv]
  for (int h = 0; h < Hv; ++h) {
    const int hk = h / (Hv / Hk);
    const float* q = &t.q[static_cast<size_t>(hk) * dk];
    const float* k = &t.k[static_cast<size_t>(hk) * dk];
    const float* v = &t.v[static_cast<size_t>(h) * dv];
    float* S = st.S.ptr() + static_cast<size_t>(h) * dk * dv;  // [dk, dv]
    const float decay = std::exp(t.g[h]), beta = t.beta[h];
    for (int i = 0; i < dk * dv; ++i) S[i] *= decay;
    std::fill(uu.begin(), uu.end(), 0.0f);  // S^T k
    for (int a = 0; a < dk; ++a)
      for (int b = 0; b < dv; ++b) uu[b] += S[a * dv + b] * k[a];
    for (int b = 0; b < dv; ++b) uu[b] = beta * (v[b] - uu[b]);
    for (int a = 0; a < dk; ++a)
      for (int b = 0; b < dv; ++b) S[a * dv + b] += k[a] * uu[b];
    float* oh = o + static_cast<size_t>(h) * dv;
    for (int a = 0; a < dk; ++a)
      for (int b = 0; b < dv; ++b) oh[b] += S[a * dv + b] * q[a];
  }
}

// Chunked WY form (SPEC 5): with gamma = cumsum of g in the chunk and A = strict_tril(beta K K^T * Gamma),
// solve (I + A) [U | W] = [beta V | beta K exp(gamma)] by forward substitution; V' = U - W S;
// O = (Q exp(gamma)) S + tril(Q K^T * Gamma) V'; S = exp(gamma_C) S + (K exp(gamma_C - gamma))^T V'.
void GatedDeltaNetMixer::Prefill(const Tokens& t, GatedDeltaNetState& st, float* o) const {
  const int Hk = cfg_.n_qk_heads, Hv = cfg_.n_v_heads, dk = cfg_.head_k_dim, dv = cfg_.head_v_dim;
  const int C = std::max(1, cfg_.chunk_size), w = dv + dk, L = t.L;
  std::vector<float> Qc(static_cast<size_t>(C) * dk), Kc(Qc.size()), X(static_cast<size_t>(C) * w);
  std::vector<float> A(static_cast<size_t>(C) * C), Vp(static_cast<size_t>(C) * dv), Oc(Vp.size()), gam(C);
  for (int h = 0; h < Hv; ++h) {
    const int hk = h / (Hv / Hk);
    float* S = st.S.ptr() + static_cast<size_t>(h) * dk * dv;  // [dk, dv]
    for (int c0 = 0; c0 < L; c0 += C) {
      const int n = std::min(C, L - c0);
      float acc = 0.0f;
      for (int l = 0; l < n; ++l) {
        const size_t lh = static_cast<size_t>(c0 + l) * Hv + h;
        gam[l] = (acc += t.g[lh]);
        const float beta = t.beta[lh], eg = std::exp(gam[l]);
        const float* q = &t.q[(static_cast<size_t>(c0 + l) * Hk + hk) * dk];
        const float* k = &t.k[(static_cast<size_t>(c0 + l) * Hk + hk) * dk];
        const float* v = &t.v[lh * dv];
        std::copy_n(q, dk, &Qc[static_cast<size_t>(l) * dk]);
        std::copy_n(k, dk, &Kc[static_cast<size_t>(l) * dk]);
        float* x = &X[static_cast<size_t>(l) * w];  // [beta v | beta k exp(gamma)]
        for (int b = 0; b < dv; ++b) x[b] = beta * v[b];
        for (int a = 0; a < dk; ++a) x[dv + a] = beta * eg * k[a];
      }
      // A = K K^T; forward substitution row by row: X_i -= sum_{j<i} beta_i (k_i.k_j) Gamma_ij X_j.
      ops::Gemm(false, true, n, n, dk, 1.0f, Kc.data(), dk, Kc.data(), dk, 0.0f, A.data(), n);
      for (int i = 1; i < n; ++i) {
        const float beta = t.beta[static_cast<size_t>(c0 + i) * Hv + h];
        float* xi = &X[static_cast<size_t>(i) * w];
        for (int j = 0; j < i; ++j) {
          const float a = beta * A[static_cast<size_t>(i) * n + j] * std::exp(gam[i] - gam[j]);
          const float* xj = &X[static_cast<size_t>(j) * w];
          for (int c = 0; c < w; ++c) xi[c] -= a * xj[c];
        }
      }
      // V' = U - W S  ([n, dv] = [n, dv] - [n, dk] [dk, dv]).
      for (int l = 0; l < n; ++l) std::copy_n(&X[static_cast<size_t>(l) * w], dv, &Vp[static_cast<size_t>(l) * dv]);
      ops::Gemm(false, false, n, dv, dk, -1.0f, X.data() + dv, w, S, dv, 1.0f, Vp.data(), dv);
      // O = (Q exp(gamma)) S + tril(Q K^T * Gamma) V'.
      ops::Gemm(false, false, n, dv, dk, 1.0f, Qc.data(), dk, S, dv, 0.0f, Oc.data(), dv);
      for (int l = 0; l < n; ++l) {
        const float eg = std::exp(gam[l]);
        for (int b = 0; b < dv; ++b) Oc[static_cast<size_t>(l) * dv + b] *= eg;
      }
      ops::Gemm(false, true, n, n, dk, 1.0f, Qc.data(), dk, Kc.data(), dk, 0.0f, A.data(), n);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) A[static_cast<size_t>(i) * n + j] *= j > i ? 0.0f : std::exp(gam[i] - gam[j]);
      ops::Gemm(false, false, n, dv, n, 1.0f, A.data(), n, Vp.data(), dv, 1.0f, Oc.data(), dv);
      for (int l = 0; l < n; ++l)
        std::copy_n(&Oc[static_cast<size_t>(l) * dv], dv, o + (static_cast<size_t>(c0 + l) * Hv + h) * dv);
      // S = exp(gamma_last) S + (K exp(gamma_last - gamma))^T V'.
      for (int l = 0; l < n; ++l) {
        const float e = std::exp(gam[n - 1] - gam[l]);
        for (int a = 0; a < dk; ++a) Kc[static_cast<size_t>(l) * dk + a] *= e;
      }
      const float e = std::exp(gam[n - 1]);
      for (int i = 0; i < dk * dv; ++i) S[i] *= e;
      ops::Gemm(true, false, dk, dv, n, 1.0f, Kc.data(), dk, Vp.data(), dv, 1.0f, S, dv);
    }
  }
}

Tensor GatedDeltaNetMixer::Materialize(const float* u, int L) const {
  const int Hk = cfg_.n_qk_heads, Hv = cfg_.n_v_heads, dk = cfg_.head_k_dim;
  Tensor M({Hv, L, L});
  if (L <= 0) return M;
  Tokens t;
  Prepare(u, L, nullptr, &t);
  std::vector<float> wv(dk);
  for (int h = 0; h < Hv; ++h) {
    const int hk = h / (Hv / Hk);
    auto q = [&](int i) { return &t.q[(static_cast<size_t>(i) * Hk + hk) * dk]; };
    auto k = [&](int i) { return &t.k[(static_cast<size_t>(i) * Hk + hk) * dk]; };
    for (int s = 0; s < L; ++s) {
      // w = prod_{r=s+1..t} exp(g_r)(I - beta_r k_r k_r^T) k_s, applied in time order.
      std::copy_n(k(s), dk, wv.begin());
      const float bs = t.beta[static_cast<size_t>(s) * Hv + h];
      for (int i = s; i < L; ++i) {
        if (i > s) {
          const float* kr = k(i);
          const float br = t.beta[static_cast<size_t>(i) * Hv + h], eg = std::exp(t.g[static_cast<size_t>(i) * Hv + h]);
          float dot = 0.0f;
          for (int a = 0; a < dk; ++a) dot += kr[a] * wv[a];
          for (int a = 0; a < dk; ++a) wv[a] = eg * (wv[a] - br * dot * kr[a]);
        }
        const float* qi = q(i);
        float dot = 0.0f;
        for (int a = 0; a < dk; ++a) dot += qi[a] * wv[a];
        M.data[(static_cast<size_t>(h) * L + i) * L + s] = bs * dot;
      }
    }
  }
  return M;
}

Result<std::unique_ptr<Mixer>> MakeGatedDeltaNet(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                 const std::string& prefix) {
  const GatedDeltaNetConfig& c = cfg.gdn;
  if (Status s = GatedDeltaNetMixer::ValidateConfig(c, cfg.dim); !s.ok())
    return Errorf("layer {}: {}", layer, s.message());
  GatedDeltaNetWeights w;
  auto load = [&](const std::string& name, const std::vector<int64_t>& shape, Tensor* dst) -> Status {
    auto r = store.Load(prefix + name, shape);
    if (!r.ok()) return Errorf("layer {}: {}", layer, r.status().message());
    *dst = std::move(r).value();
    return Status::Ok();
  };
  // Names and shapes from the schema's table (model/schema.h), in its order.
  const std::vector<TensorSpec> specs = MixerKindTensors(cfg, MixerKind::kGatedDeltaNet);
  Tensor* dst[] = {&w.q_proj, &w.k_proj, &w.v_proj,   &w.a_proj,   &w.b_proj, &w.A_log, &w.dt_bias,
                   &w.q_conv, &w.k_conv, &w.v_conv,   &w.g_proj,   &w.o_norm, &w.o_proj};
  if (specs.size() != std::size(dst)) return Errorf("internal error: gated_deltanet table has {} tensors", specs.size());
  for (size_t i = 0; i < specs.size(); ++i) SUBQ_RETURN_IF_ERROR(load(specs[i].name, specs[i].shape, dst[i]));
  return std::unique_ptr<Mixer>(std::make_unique<GatedDeltaNetMixer>(c, cfg.dim, std::move(w)));
}

}  // namespace subq
