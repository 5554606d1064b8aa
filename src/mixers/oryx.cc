// Oryx multi-mixer: load, batched forward with per-position modes, mixing matrices (see oryx.h).
// Both modes run on the existing kernels: AttentionCore (ops::AttendCausal) for attention, ops::SsdStep /
// ops::SsdChunkedScan for the ssd recurrence, GatedDeltaNetMixer::Step / Prefill for the gated delta rule.
#include "mixers/oryx.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mixers/mixers.h"
#include "mixers/ssm_state.h"
#include "ops/ops.h"
#include "ops/ssd.h"

namespace subq {
namespace {

constexpr float kL2Eps = 1e-6f;  // as the gated delta rule's q/k norm (fla l2norm)
constexpr float kNormEps = 1e-5f;

void L2Normalize(const float* x, int n, float scale, float* out) {
  double ss = 0.0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = scale / std::sqrt(static_cast<float>(ss) + kL2Eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * inv;
}

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

OryxMixer::OryxMixer(const ModelConfig& cfg) : a_(cfg.attn), dim_(cfg.dim) {
  core_ = AttentionCore{a_.n_heads, a_.n_kv_heads, a_.head_dim, a_.rope_interleaved, RopeInvFreq(cfg.attn)};
  gdn_ = cfg.oryx.recurrence == "gdn";
  default_mode_ = cfg.oryx.default_mode == "attention" ? MixerMode::kAttention : MixerMode::kRecurrent;
  rec_cfg_ = GatedDeltaNetConfig{a_.n_heads, a_.n_heads, a_.head_dim, a_.head_dim, 1, cfg.oryx.chunk_size, kNormEps};
  gdn_kernels_ = std::make_unique<GatedDeltaNetMixer>(rec_cfg_, cfg.dim, GatedDeltaNetWeights{});
}

Result<std::unique_ptr<OryxMixer>> OryxMixer::Load(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                   const std::string& prefix) {
  const AttentionConfig& a = cfg.attn;
  if (a.n_heads <= 0 || a.n_kv_heads <= 0 || a.head_dim <= 0 || a.head_dim % 2 != 0 || a.n_heads % a.n_kv_heads != 0)
    return Errorf("layer {}: bad oryx attention config (heads {}, kv heads {}, head_dim {})", layer, a.n_heads,
                  a.n_kv_heads, a.head_dim);
  if (cfg.oryx.recurrence != "ssd" && cfg.oryx.recurrence != "gdn")
    return Errorf("layer {}: oryx recurrence '{}' is not one of ssd, gdn", layer, cfg.oryx.recurrence);
  if (cfg.oryx.default_mode != "attention" && cfg.oryx.default_mode != "recurrent")
    return Errorf("layer {}: oryx default_mode '{}' is not one of attention, recurrent", layer, cfg.oryx.default_mode);
  if (cfg.oryx.chunk_size <= 0) return Errorf("layer {}: oryx chunk_size {} must be positive", layer, cfg.oryx.chunk_size);
  auto m = std::unique_ptr<OryxMixer>(new OryxMixer(cfg));
  const int64_t qd = a.n_heads * a.head_dim, kvd = a.n_kv_heads * a.head_dim, d = cfg.dim, H = a.n_heads;
  SUBQ_ASSIGN_OR_RETURN(m->wq_, store.LoadWeight(prefix + "q_proj.weight", qd, d));
  SUBQ_ASSIGN_OR_RETURN(m->wk_, store.LoadWeight(prefix + "k_proj.weight", kvd, d));
  SUBQ_ASSIGN_OR_RETURN(m->wv_, store.LoadWeight(prefix + "v_proj.weight", kvd, d));
  SUBQ_ASSIGN_OR_RETURN(m->wo_, store.LoadWeight(prefix + "o_proj.weight", d, qd));
  SUBQ_ASSIGN_OR_RETURN(m->wa_, store.LoadWeight(prefix + "oryx_a_proj.weight", H, d));
  SUBQ_ASSIGN_OR_RETURN(m->dt_bias_, store.Load(prefix + "oryx_dt_bias", {H}));
  SUBQ_ASSIGN_OR_RETURN(m->A_log_, store.Load(prefix + "oryx_A_log", {H}));
  SUBQ_ASSIGN_OR_RETURN(m->norm_w_, store.Load(prefix + "oryx_norm.weight", {a.head_dim}));
  if (m->gdn_) {
    SUBQ_ASSIGN_OR_RETURN(m->wb_, store.LoadWeight(prefix + "oryx_b_proj.weight", H, d));
  } else {
    SUBQ_ASSIGN_OR_RETURN(m->D_, store.Load(prefix + "oryx_D", {H}));
  }
  return m;
}

std::unique_ptr<LayerState> OryxMixer::NewState(int max_context) const {
  return std::make_unique<OryxState>(a_.n_kv_heads, a_.head_dim, max_context, rec_cfg_);
}

int64_t OryxMixer::SharedParams() const {
  return wq_.rows * wq_.cols + wk_.rows * wk_.cols + wv_.rows * wv_.cols + wo_.rows * wo_.cols;
}

int64_t OryxMixer::ExtraParams() const {
  return wa_.rows * wa_.cols + wb_.rows * wb_.cols +
         static_cast<int64_t>(dt_bias_.numel() + A_log_.numel() + D_.numel() + norm_w_.numel());
}

size_t OryxMixer::WeightBytes() const {
  return wq_.Bytes() + wk_.Bytes() + wv_.Bytes() + wo_.Bytes() + wa_.Bytes() + (wb_.empty() ? 0 : wb_.Bytes()) +
         (dt_bias_.numel() + A_log_.numel() + D_.numel() + norm_w_.numel()) * sizeof(float);
}

size_t OryxMixer::RecurrenceScratch(const Threads& th) const {
  const ops::SsdDims d{a_.n_heads, a_.head_dim, a_.head_dim, a_.n_heads};
  return gdn_ ? 0 : ops::SsdScratchFloats(th, d, kCpuScanChunk) + Arena::kAlign;
}

size_t OryxMixer::ScratchFloats(int T, int n_threads) const {
  const size_t C = a_.n_heads * a_.head_dim, kvd = a_.n_kv_heads * a_.head_dim, H = a_.n_heads;
  return static_cast<size_t>(T) * (C + 2 * kvd + C + 2 * H + 2 * C + C + C + C + 3 * H) +
         RecurrenceScratch(Threads{n_threads}) + core_.ScratchFloats(n_threads) + 24 * Arena::kAlign;
}

void OryxMixer::Features(int n, const float* q, const float* k, const float* v, const float* ap, const float* bp,
                         float* kq, float* vh, float* loga, float* dt, float* beta) const {
  const int H = a_.n_heads, hd = a_.head_dim, C = H * hd, kvd = a_.n_kv_heads * hd, group = H / a_.n_kv_heads;
  const float qscale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int t = 0; t < n; ++t) {
    const size_t r = t;
    for (int h = 0; h < H; ++h) {
      const int kh = h / group;
      L2Normalize(k + r * kvd + kh * hd, hd, 1.0f, kq + r * 2 * C + h * hd);        // k^   [H*hd]
      L2Normalize(q + r * C + h * hd, hd, qscale, kq + r * 2 * C + C + h * hd);     // q^   [H*hd]
      std::memcpy(vh + r * C + h * hd, v + r * kvd + kh * hd, hd * sizeof(float));  // v    [H*hd]
      const float d = ops::Softplus(ap[r * H + h] + dt_bias_.data[h]);
      dt[r * H + h] = d;
      loga[r * H + h] = -std::exp(A_log_.data[h]) * d;
      if (gdn_) beta[r * H + h] = Sigmoid(bp[r * H + h]);
    }
  }
}

void OryxMixer::Recur(const Threads& th, int n, const float* kq, const float* vh, const float* loga, const float* dt,
                      const float* beta, OryxState& st, float* y, float* scratch) const {
  const int H = a_.n_heads, hd = a_.head_dim, C = H * hd;
  if (!gdn_) {
    const ops::SsdDims d{H, hd, hd, H};  // x = dt v, B = k^, C = q^ (one "group" per head)
    float* xdt = scratch;                // [n, C]
    for (int t = 0; t < n; ++t)
      for (int h = 0; h < H; ++h)
        for (int p = 0; p < hd; ++p)
          xdt[static_cast<size_t>(t) * C + h * hd + p] = vh[static_cast<size_t>(t) * C + h * hd + p] * dt[t * H + h];
    float* scan = scratch + (static_cast<size_t>(n) * C + 15) / 16 * 16;
    if (n == 1)
      ops::SsdStep(th, d, xdt, kq, kq + C, loga, st.rec.S.ptr(), y);
    else
      ops::SsdChunkedScan(th, d, n, kCpuScanChunk, xdt, C, kq, kq + C, 2 * C, loga, st.rec.S.ptr(), y, C, scan);
    AddSkip(n, H, hd, D_.ptr(), vh, C, y, C);  // y += D v
    return;
  }
  // Gated delta rule on the GatedDeltaNet kernels: q/k/v as H heads of hd, g = log a, beta.
  thread_local GatedDeltaNetMixer::Tokens tok;
  tok.L = n;
  tok.q.resize(static_cast<size_t>(n) * C), tok.k.resize(tok.q.size()), tok.v.assign(vh, vh + tok.q.size());
  for (int t = 0; t < n; ++t) {
    std::memcpy(&tok.k[static_cast<size_t>(t) * C], kq + static_cast<size_t>(t) * 2 * C, C * sizeof(float));
    std::memcpy(&tok.q[static_cast<size_t>(t) * C], kq + static_cast<size_t>(t) * 2 * C + C, C * sizeof(float));
  }
  tok.g.assign(loga, loga + static_cast<size_t>(n) * H);
  tok.beta.assign(beta, beta + static_cast<size_t>(n) * H);
  if (n == 1)
    gdn_kernels_->Step(tok, st.rec, y);
  else
    gdn_kernels_->Prefill(tok, st.rec, y);
}

void OryxMixer::Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* out) const {
  const int H = a_.n_heads, hd = a_.head_dim, C = H * hd, kvd = a_.n_kv_heads * hd;
  Arena& a = *ctx.arena;
  const size_t Tz = T;
  float* q = a.Take(Tz * C);      // [T, H*hd]
  float* k = a.Take(Tz * kvd);    // [T, KV*hd]
  float* v = a.Take(Tz * kvd);    // [T, KV*hd]
  float* att = a.Take(Tz * C);    // [T, H*hd] the output before o_proj, whichever mode
  float* ap = a.Take(Tz * H);     // [T, H]
  float* bp = a.Take(Tz * H);     // [T, H]
  float* kq = a.Take(Tz * 2 * C); // [T, k^ | q^]
  float* vh = a.Take(Tz * C);     // [T, H*hd]
  float* y = a.Take(Tz * C);      // [T, H*hd] recurrent output
  float* loga = a.Take(Tz * H), *dt = a.Take(Tz * H), *beta = a.Take(Tz * H);  // [T, H]
  float* rec_scratch = a.Take(Tz * C + RecurrenceScratch(ctx.threads));
  const size_t core_floats = core_.ScratchFloats(ctx.threads.n);
  float* core_scratch = a.Take(core_floats);
  ops::Linear(ctx.threads, u, T, wq_, q);
  ops::Linear(ctx.threads, u, T, wk_, k);
  ops::Linear(ctx.threads, u, T, wv_, v);
  ops::Linear(ctx.threads, u, T, wa_, ap);
  if (gdn_) ops::Linear(ctx.threads, u, T, wb_, bp);
  for (const SeqSlice& s : seqs) {
    auto& st = static_cast<OryxState&>(*s.state);
    auto mode_at = [&](int t) {
      return s.modes != nullptr ? s.modes->At(s.pos + t, default_mode_) : default_mode_;
    };
    // Runs of equal mode in order: attention runs rotate, append and attend (AttentionCore); recurrent
    // runs only rotate and append, so the KV cache stays complete.
    for (int t0 = 0; t0 < s.n;) {
      const MixerMode m = mode_at(t0);
      int t1 = t0 + 1;
      while (t1 < s.n && mode_at(t1) == m) ++t1;
      const SeqSlice run{s.row0 + t0, t1 - t0, s.pos + t0, s.state, nullptr};
      if (m == MixerMode::kAttention) {
        Arena local(core_scratch, core_floats);
        ExecContext c2{ctx.threads, &local, nullptr};
        core_.Run(q, k, v, std::span<const SeqSlice>(&run, 1), c2,
                  [](const SeqSlice& x) -> KvCache& { return static_cast<OryxState&>(*x.state).kv; }, att);
      } else {
        for (int t = 0; t < run.n; ++t) {
          const size_t r = static_cast<size_t>(run.row0 + t);
          ops::Rope(q + r * C, H, hd, run.pos + t, core_.inv_freq.data(), core_.interleaved);
          ops::Rope(k + r * kvd, a_.n_kv_heads, hd, run.pos + t, core_.inv_freq.data(), core_.interleaved);
          std::memcpy(st.kv.k_at(st.kv.len() + t), k + r * kvd, kvd * sizeof(float));
          std::memcpy(st.kv.v_at(st.kv.len() + t), v + r * kvd, kvd * sizeof(float));
        }
        st.kv.Advance(run.n);
      }
      t0 = t1;
    }
    // The recurrence over all of the slice's rows (rotated q, k): the state advances in every mode.
    const size_t r0 = s.row0;
    Features(s.n, q + r0 * C, k + r0 * kvd, v + r0 * kvd, ap + r0 * H, bp + r0 * H, kq + r0 * 2 * C, vh + r0 * C,
             loga + r0 * H, dt + r0 * H, beta + r0 * H);
    Recur(ctx.threads, s.n, kq + r0 * 2 * C, vh + r0 * C, loga + r0 * H, dt + r0 * H, beta + r0 * H, st, y + r0 * C,
          rec_scratch);
    for (int t = 0; t < s.n; ++t) {
      if (mode_at(t) != MixerMode::kRecurrent) continue;
      float* yr = y + (r0 + t) * C;
      ops::RmsNorm(yr, norm_w_.ptr(), yr, H, hd, kNormEps);  // per head
      std::memcpy(att + (r0 + t) * C, yr, C * sizeof(float));
    }
  }
  ops::Linear(ctx.threads, att, T, wo_, out);  // [T, dim]
}

void OryxMixer::OutputFromMixing(const Tensor& M, const float* u, int L, MixerMode mode, float* out) const {
  const int H = a_.n_heads, hd = a_.head_dim, C = H * hd, kvd = a_.n_kv_heads * hd, group = H / a_.n_kv_heads;
  std::vector<float> v(static_cast<size_t>(L) * kvd), y(static_cast<size_t>(L) * C);
  ops::Linear(Threads::Default(), u, L, wv_, v.data());  // [L, KV*hd]
  for (int h = 0; h < H; ++h) {
    const int kh = h / group;
    // y_h [L, hd] = M_h [L, L] v_kh [L, hd]
    ops::Gemm(false, false, L, hd, L, 1.0f, M.ptr() + static_cast<size_t>(h) * L * L, L, v.data() + kh * hd, kvd,
              0.0f, y.data() + h * hd, C);
    if (mode == MixerMode::kRecurrent && !gdn_)
      for (int t = 0; t < L; ++t)
        for (int p = 0; p < hd; ++p)
          y[static_cast<size_t>(t) * C + h * hd + p] += D_.data[h] * v[static_cast<size_t>(t) * kvd + kh * hd + p];
  }
  if (mode == MixerMode::kRecurrent) ops::RmsNorm(y.data(), norm_w_.ptr(), y.data(), L * H, hd, kNormEps);
  ops::Linear(Threads::Default(), y.data(), L, wo_, out);  // [L, dim]
}

Tensor OryxMixer::MaterializeMode(const float* u, int L, MixerMode mode) const {
  const int H = a_.n_heads, hd = a_.head_dim, C = H * hd, kvd = a_.n_kv_heads * hd;
  const Threads th = Threads::Default();
  std::vector<float> q(static_cast<size_t>(L) * C), k(static_cast<size_t>(L) * kvd), v(k.size());
  ops::Linear(th, u, L, wq_, q.data());
  ops::Linear(th, u, L, wk_, k.data());
  if (mode == MixerMode::kAttention) return core_.Probabilities(q.data(), k.data(), L);
  for (int t = 0; t < L; ++t) {
    ops::Rope(q.data() + static_cast<size_t>(t) * C, H, hd, t, core_.inv_freq.data(), core_.interleaved);
    ops::Rope(k.data() + static_cast<size_t>(t) * kvd, a_.n_kv_heads, hd, t, core_.inv_freq.data(), core_.interleaved);
  }
  std::vector<float> ap(static_cast<size_t>(L) * H), bp(ap.size()), kq(static_cast<size_t>(L) * 2 * C),
      vh(static_cast<size_t>(L) * C), loga(ap.size()), dt(ap.size()), beta(ap.size());
  ops::Linear(th, u, L, wa_, ap.data());
  if (gdn_) ops::Linear(th, u, L, wb_, bp.data());
  Features(L, q.data(), k.data(), v.data(), ap.data(), bp.data(), kq.data(), vh.data(), loga.data(), dt.data(),
           beta.data());
  Tensor M({H, L, L});
  auto kh = [&](int t, int h) { return &kq[static_cast<size_t>(t) * 2 * C + h * hd]; };
  auto qh = [&](int t, int h) { return &kq[static_cast<size_t>(t) * 2 * C + C + h * hd]; };
  auto dot = [&](const float* x, const float* z) {
    double s = 0.0;
    for (int i = 0; i < hd; ++i) s += static_cast<double>(x[i]) * z[i];
    return s;
  };
  std::vector<double> w(hd);
  for (int h = 0; h < H; ++h) {
    float* Mh = M.ptr() + static_cast<size_t>(h) * L * L;
    for (int j = 0; j < L; ++j) {
      if (!gdn_) {  // M[i, j] = (q^_i . k^_j) exp(sum_{r=j+1..i} log a_r) dt_j
        double cum = 0.0;
        for (int i = j; i < L; ++i) {
          if (i > j) cum += loga[static_cast<size_t>(i) * H + h];
          Mh[static_cast<size_t>(i) * L + j] =
              static_cast<float>(dot(qh(i, h), kh(j, h)) * std::exp(cum) * dt[static_cast<size_t>(j) * H + h]);
        }
        continue;
      }
      // gdn: M[i, j] = beta_j q^_i . (prod_{r=j+1..i} a_r (I - beta_r k^_r k^_r^T)) k^_j  (SPEC section 5)
      const float* kj = kh(j, h);
      for (int c = 0; c < hd; ++c) w[c] = kj[c];
      const double bj = beta[static_cast<size_t>(j) * H + h];
      for (int i = j; i < L; ++i) {
        if (i > j) {
          const float* kr = kh(i, h);
          const double br = beta[static_cast<size_t>(i) * H + h], ar = std::exp(loga[static_cast<size_t>(i) * H + h]);
          double kw = 0.0;
          for (int c = 0; c < hd; ++c) kw += kr[c] * w[c];
          for (int c = 0; c < hd; ++c) w[c] = ar * (w[c] - br * kw * kr[c]);
        }
        const float* qi = qh(i, h);
        double s = 0.0;
        for (int c = 0; c < hd; ++c) s += qi[c] * w[c];
        Mh[static_cast<size_t>(i) * L + j] = static_cast<float>(bj * s);
      }
    }
  }
  return M;
}

Result<std::unique_ptr<Mixer>> MakeOryx(const ModelConfig& cfg, int layer, const TensorStore& store,
                                        const std::string& prefix) {
  SUBQ_ASSIGN_OR_RETURN(auto m, OryxMixer::Load(cfg, layer, store, prefix));
  return std::unique_ptr<Mixer>(std::move(m));
}

}  // namespace subq
