// Mamba-3 mixer: step, chunked prefill and materialized mixing matrix (see mamba3.h and SPEC section 4).
// Written here because no library offers the trapezoidal rotary SSM on CPU.
#include "mixers/mamba3.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "mixers/mixers.h"
#include "model/schema.h"
#include "ops/ops.h"

namespace subq {
namespace {

constexpr float kPi = 3.14159265358979323846f;
constexpr float kTwoPi = 2.0f * kPi;
constexpr float kBcNormEps = 1e-5f;
constexpr float kOutNormEps = 1e-5f;
constexpr float kAFloor = 1e-4f;

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
// A = -f(dd_A), f(x) = 1 + x (x >= 0), 1 / (1 - x) (x < 0): positive, continuous, heavy-tailed.
inline float DecayRate(float dd_a) {
  const float f = dd_a >= 0.0f ? 1.0f + dd_a : 1.0f / (1.0f - dd_a);
  return std::min(-f, -kAFloor);
}

// Rotates v [N] by angles phase [n_angles]: interleaved pairs (SISO) or half-split pairs (MIMO).
void Rotate(float* v, const float* phase, int n_angles, int N, bool half_split) {
  const int stride = half_split ? 1 : 2, other = half_split ? N / 2 : 1;
  for (int i = 0; i < n_angles; ++i) {
    const float c = std::cos(phase[i]), s = std::sin(phase[i]);
    float* a = v + i * stride;
    float* b = a + other;
    const float a0 = *a, b0 = *b;
    *a = a0 * c - b0 * s;
    *b = a0 * s + b0 * c;
  }
}

Status CheckShape(const char* name, const Tensor& t, const std::vector<int64_t>& want) {
  if (t.shape != want)
    return Errorf("mamba3: tensor '{}' has shape {}, expected {}", name, ShapeStr(t.shape), ShapeStr(want));
  return Status::Ok();
}

}  // namespace

int Mamba3Mixer::InProjRows(const Mamba3Config& c, int) {
  return 2 * c.d_inner() + 2 * c.n_groups * c.mimo_rank * c.state_size + 3 * c.n_heads + c.n_angles();
}

Status Mamba3Mixer::ValidateConfig(const Mamba3Config& c, int d_model) {
  if (c.n_heads <= 0 || c.head_dim <= 0 || c.state_size <= 0 || c.n_groups <= 0 || c.mimo_rank <= 0 || d_model <= 0)
    return Errorf("mamba3: bad dims (heads {}, head_dim {}, state {}, groups {}, rank {}, d_model {})", c.n_heads,
                  c.head_dim, c.state_size, c.n_groups, c.mimo_rank, d_model);
  if (c.n_heads % c.n_groups != 0)
    return Errorf("mamba3: n_heads {} not divisible by n_groups {}", c.n_heads, c.n_groups);
  if (c.state_size % 2 != 0 || c.n_angles() <= 0 || c.n_angles() > c.state_size / 2)
    return Errorf("mamba3: state_size {} with rope_fraction {} gives {} angles (need 1..N/2, N even)", c.state_size,
                  c.rope_fraction, c.n_angles());
  return Status::Ok();
}

Status Mamba3Mixer::Validate(const Mamba3Config& c, int d_model, const Mamba3Weights& w) {
  SUBQ_RETURN_IF_ERROR(ValidateConfig(c, d_model));
  const int64_t H = c.n_heads, P = c.head_dim, N = c.state_size, R = c.mimo_rank, di = c.d_inner();
  SUBQ_RETURN_IF_ERROR(CheckShape("in_proj.weight", w.in_proj, {InProjRows(c, d_model), d_model}));
  SUBQ_RETURN_IF_ERROR(CheckShape("dt_bias", w.dt_bias, {H}));
  SUBQ_RETURN_IF_ERROR(CheckShape("D", w.D, {H}));
  SUBQ_RETURN_IF_ERROR(CheckShape("B_norm.weight", w.B_norm, {N}));
  SUBQ_RETURN_IF_ERROR(CheckShape("C_norm.weight", w.C_norm, {N}));
  SUBQ_RETURN_IF_ERROR(CheckShape("B_bias", w.B_bias, {H, R, N}));
  SUBQ_RETURN_IF_ERROR(CheckShape("C_bias", w.C_bias, {H, R, N}));
  if (R > 1 || !w.mimo_x.empty()) {
    SUBQ_RETURN_IF_ERROR(CheckShape("mimo_x", w.mimo_x, {H, R, P}));
    SUBQ_RETURN_IF_ERROR(CheckShape("mimo_z", w.mimo_z, {H, R, P}));
    SUBQ_RETURN_IF_ERROR(CheckShape("mimo_o", w.mimo_o, {H, R, P}));
  }
  if (c.output_norm) SUBQ_RETURN_IF_ERROR(CheckShape("norm.weight", w.norm, {di}));
  SUBQ_RETURN_IF_ERROR(CheckShape("out_proj.weight", w.out_proj, {d_model, di}));
  return Status::Ok();
}

Mamba3Mixer::Mamba3Mixer(const Mamba3Config& cfg, int d_model, Mamba3Weights w)
    : cfg_(cfg), d_model_(d_model), w_(std::move(w)) {
  if (w_.mimo_x.empty()) {
    ones_.assign(static_cast<size_t>(cfg_.n_heads) * cfg_.mimo_rank * cfg_.head_dim, 1.0f);
    mx_ = mz_ = mo_ = ones_.data();
  } else {
    mx_ = w_.mimo_x.ptr(), mz_ = w_.mimo_z.ptr(), mo_ = w_.mimo_o.ptr();
  }
}

size_t Mamba3Mixer::WeightBytes() const {
  size_t n = 0;
  for (const Tensor* t : {&w_.in_proj, &w_.dt_bias, &w_.D, &w_.B_norm, &w_.C_norm, &w_.B_bias, &w_.C_bias, &w_.mimo_x,
                          &w_.mimo_z, &w_.mimo_o, &w_.norm, &w_.out_proj})
    n += t->data.size() * sizeof(float);
  return n;
}

size_t Mamba3Mixer::ScratchFloats(int T, int) const {
  return static_cast<size_t>(T) * (InProjRows(cfg_, d_model_) + cfg_.d_inner()) + 2 * Arena::kAlign;
}

void Mamba3Mixer::Prepare(const float* u, int L, float* phase, Tokens* t) const {
  const int rows = InProjRows(cfg_, d_model_);
  t->proj.resize(static_cast<size_t>(L) * rows);  // [L, rows]
  ops::Linear(Threads::Default(), u, L, ops::Weight::F32(w_.in_proj.ptr(), rows, d_model_), t->proj.data());
  PrepareRows(t->proj.data(), L, phase, t);  // reads proj only
}

// Per-thread token buffers: they keep their capacity, so a warm decode step does not allocate.
static Mamba3Mixer::Tokens& ThreadTokens() {
  thread_local Mamba3Mixer::Tokens t;
  return t;
}

void Mamba3Mixer::Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx,
                          float* out) const {
  const int rows = InProjRows(cfg_, d_model_), di = cfg_.d_inner();
  float* proj = ctx.arena->Take(static_cast<size_t>(T) * rows);  // [T, rows]
  float* o = ctx.arena->Take(static_cast<size_t>(T) * di);       // [T, d_inner]
  ops::Linear(ctx.threads, u, T, ops::Weight::F32(w_.in_proj.ptr(), rows, d_model_), proj);
  const int S = static_cast<int>(seqs.size());
// static: each thread always gets the same sequences, so its token buffers are warm after one step
#pragma omp parallel for num_threads(ctx.threads.n) schedule(static) if (S > 1)
  for (int i = 0; i < S; ++i) {
    const SeqSlice& s = seqs[i];
    auto& st = static_cast<Mamba3State&>(*s.state);
    Tokens& t = ThreadTokens();
    PrepareRows(proj + static_cast<size_t>(s.row0) * rows, s.n, st.phase.ptr(), &t);
    float* os = o + static_cast<size_t>(s.row0) * di;
    if (s.n == 1)
      Step(t, st, os);
    else
      Prefill(t, st, os);
  }
  ops::Linear(ctx.threads, o, T, ops::Weight::F32(w_.out_proj.ptr(), d_model_, di), out);  // [T, d_model]
}

void Mamba3Mixer::PrepareRows(const float* projp, int L, float* phase, Tokens* t) const {
  const int H = cfg_.n_heads, N = cfg_.state_size, G = cfg_.n_groups, R = cfg_.mimo_rank;
  const int NA = cfg_.n_angles(), di = cfg_.d_inner(), rows = InProjRows(cfg_, d_model_);
  const bool half_split = R > 1 || !w_.mimo_x.empty();
  const int oB = 2 * di, oC = oB + G * R * N, odt = oC + G * R * N, oA = odt + H, otr = oA + H, oang = otr + H;
  t->L = L;
  t->z.resize(static_cast<size_t>(L) * di), t->x.resize(static_cast<size_t>(L) * di);
  t->q.resize(static_cast<size_t>(L) * R * H * N), t->k.resize(t->q.size());
  t->dt.resize(static_cast<size_t>(L) * H), t->adt.resize(t->dt.size()), t->lam.resize(t->dt.size());
  std::vector<float>&bn = t->bn, &cn = t->cn, &theta = t->theta;  // [R, G, N] normalised B, C; [NA]
  bn.resize(static_cast<size_t>(R) * G * N), cn.resize(bn.size()), theta.resize(NA);
  for (int l = 0; l < L; ++l) {
    const float* row = projp + static_cast<size_t>(l) * rows;
    std::copy(row, row + di, t->z.begin() + static_cast<size_t>(l) * di);  // [H, P]
    std::copy(row + di, row + 2 * di, t->x.begin() + static_cast<size_t>(l) * di);
    ops::RmsNorm(row + oB, w_.B_norm.ptr(), bn.data(), R * G, N, kBcNormEps);
    ops::RmsNorm(row + oC, w_.C_norm.ptr(), cn.data(), R * G, N, kBcNormEps);
    for (int i = 0; i < NA; ++i) theta[i] = kPi * std::tanh(row[oang + i]);
    for (int h = 0; h < H; ++h) {
      const size_t lh = static_cast<size_t>(l) * H + h;
      const float dt = ops::Softplus(row[odt + h] + w_.dt_bias.data[h]);
      t->dt[lh] = dt;
      t->adt[lh] = DecayRate(row[oA + h]) * dt;
      t->lam[lh] = Sigmoid(row[otr + h]);
      float* ph = phase + static_cast<size_t>(h) * NA;  // [n_angles]
      for (int i = 0; i < NA; ++i) {
        float a = ph[i] + dt * theta[i];
        ph[i] = a - kTwoPi * std::floor(a / kTwoPi);  // keep the phase in [0, 2pi)
      }
      const int g = h / (H / G);
      for (int r = 0; r < R; ++r) {
        const size_t off = ((static_cast<size_t>(l) * R + r) * H + h) * N;
        const float* bb = w_.B_bias.ptr() + (static_cast<size_t>(h) * R + r) * N;
        const float* cb = w_.C_bias.ptr() + (static_cast<size_t>(h) * R + r) * N;
        for (int n = 0; n < N; ++n) {
          t->k[off + n] = bn[(r * G + g) * N + n] + bb[n];
          t->q[off + n] = cn[(r * G + g) * N + n] + cb[n];
        }
        Rotate(&t->k[off], ph, NA, N, half_split);
        Rotate(&t->q[off], ph, NA, N, half_split);
      }
    }
  }
}

void Mamba3Mixer::Output(const float* y, const float* z, float* o) const {
  const int H = cfg_.n_heads, P = cfg_.head_dim, R = cfg_.mimo_rank;
  std::fill(o, o + H * P, 0.0f);
  for (int r = 0; r < R; ++r) {
    for (int h = 0; h < H; ++h) {
      const float* src = y + (static_cast<size_t>(r) * H + h) * P;
      const size_t hr = (static_cast<size_t>(h) * R + r) * P;
      float scale = 1.0f;
      if (cfg_.output_norm) {
        double ss = 0.0;
        for (int p = 0; p < P; ++p) ss += static_cast<double>(src[p]) * src[p];
        scale = 1.0f / std::sqrt(static_cast<float>(ss / P) + kOutNormEps);
      }
      for (int p = 0; p < P; ++p) {
        float v = src[p] * scale;
        if (cfg_.output_norm) v *= w_.norm.data[static_cast<size_t>(h) * P + p];
        o[h * P + p] += mo_[hr + p] * v * ops::Silu(z[h * P + p] * mz_[hr + p]);
      }
    }
  }
}

void Mamba3Mixer::Step(const Tokens& t, Mamba3State& st, float* o) const {
  const int H = cfg_.n_heads, P = cfg_.head_dim, N = cfg_.state_size, R = cfg_.mimo_rank;
  thread_local std::vector<float> y, v, vp;
  y.resize(static_cast<size_t>(R) * H * P);                                        // [R, H, P]
  v.resize(static_cast<size_t>(R) * P), vp.resize(v.size());                       // [R, P] this / previous
  for (int h = 0; h < H; ++h) {
    const float alpha = std::exp(t.adt[h]), dt = t.dt[h], lam = t.lam[h];
    const float beta = (1.0f - lam) * dt * alpha, gamma = lam * dt;
    for (int r = 0; r < R; ++r)
      for (int p = 0; p < P; ++p) {
        const float m = mx_[(static_cast<size_t>(h) * R + r) * P + p];
        v[r * P + p] = t.x[h * P + p] * m;
        vp[r * P + p] = st.x_last.data[h * P + p] * m;
      }
    float* S = st.ssm.ptr() + static_cast<size_t>(h) * P * N;  // [P, N]
    for (int p = 0; p < P; ++p) {
      float* Sp = S + static_cast<size_t>(p) * N;
      for (int n = 0; n < N; ++n) Sp[n] *= alpha;
      for (int r = 0; r < R; ++r) {
        const float* k = &t.k[(static_cast<size_t>(r) * H + h) * N];
        const float* kp = st.k_last.ptr() + (static_cast<size_t>(r) * H + h) * N;
        const float a = gamma * v[r * P + p], b = beta * vp[r * P + p];
        for (int n = 0; n < N; ++n) Sp[n] += b * kp[n] + a * k[n];
      }
    }
    for (int r = 0; r < R; ++r) {
      const float* q = &t.q[(static_cast<size_t>(r) * H + h) * N];
      for (int p = 0; p < P; ++p) {
        const float* Sp = S + static_cast<size_t>(p) * N;
        float acc = 0.0f;
        for (int n = 0; n < N; ++n) acc += Sp[n] * q[n];
        y[(static_cast<size_t>(r) * H + h) * P + p] = acc + w_.D.data[h] * v[r * P + p];
      }
    }
  }
  std::copy(t.k.begin(), t.k.end(), st.k_last.data.begin());
  std::copy(t.x.begin(), t.x.end(), st.x_last.data.begin());
  Output(y.data(), t.z.data(), o);  // [H, P]
}

// Chunked scan. Each token s carries 2R rank-1 inputs: (v_s, k_s) weighted gamma_s and (v_{s-1}, k_{s-1})
// weighted beta_s, so the trapezoid needs nothing from the future and chunks are independent given the
// state; within a chunk this is SSD: Y = (Q K^T o decay) V + exp(Acum) Q S^T, then the state is passed on.
void Mamba3Mixer::Prefill(const Tokens& t, Mamba3State& st, float* o) const {
  const int H = cfg_.n_heads, P = cfg_.head_dim, N = cfg_.state_size, R = cfg_.mimo_rank, di = cfg_.d_inner();
  const int Qc = std::max(1, cfg_.chunk_size), L = t.L;
  std::vector<float> y(static_cast<size_t>(L) * R * H * P);  // [L, R, H, P]
  std::vector<float> K(static_cast<size_t>(Qc) * 2 * R * N), V(static_cast<size_t>(Qc) * 2 * R * P);
  std::vector<float> Qm(static_cast<size_t>(Qc) * R * N), Y(static_cast<size_t>(Qc) * R * P), Yoff(Y.size());
  std::vector<float> sc(static_cast<size_t>(Qc) * R * Qc * 2 * R), acum(Qc);
  for (int h = 0; h < H; ++h) {
    float* S = st.ssm.ptr() + static_cast<size_t>(h) * P * N;  // [P, N]
    for (int c0 = 0; c0 < L; c0 += Qc) {
      const int n = std::min(Qc, L - c0), nk = 2 * R * n, nq = R * n;
      float a = 0.0f;
      for (int l = 0; l < n; ++l) acum[l] = (a += t.adt[static_cast<size_t>(c0 + l) * H + h]);
      for (int l = 0; l < n; ++l) {  // K [n, 2R, N], V [n, 2R, P] (weights folded into K), Q [n, R, N]
        const int s = c0 + l;
        const size_t sh = static_cast<size_t>(s) * H + h;
        const float dt = t.dt[sh], lam = t.lam[sh];
        const float gamma = lam * dt, beta = (1.0f - lam) * dt * std::exp(t.adt[sh]);
        const float* xs = &t.x[sh * P];
        const float* xp = s > 0 ? &t.x[(sh - H) * P] : st.x_last.ptr() + static_cast<size_t>(h) * P;
        for (int r = 0; r < R; ++r) {
          const float* ks = &t.k[((static_cast<size_t>(s) * R + r) * H + h) * N];
          const float* kp = s > 0 ? &t.k[((static_cast<size_t>(s - 1) * R + r) * H + h) * N]
                                  : st.k_last.ptr() + (static_cast<size_t>(r) * H + h) * N;
          float* K0 = &K[(static_cast<size_t>(l) * 2 * R + r) * N];
          float* K1 = K0 + static_cast<size_t>(R) * N;
          for (int i = 0; i < N; ++i) K0[i] = gamma * ks[i], K1[i] = beta * kp[i];
          const float* m = mx_ + (static_cast<size_t>(h) * R + r) * P;
          float* V0 = &V[(static_cast<size_t>(l) * 2 * R + r) * P];
          float* V1 = V0 + static_cast<size_t>(R) * P;
          for (int p = 0; p < P; ++p) V0[p] = xs[p] * m[p], V1[p] = xp[p] * m[p];
          std::copy_n(&t.q[((static_cast<size_t>(s) * R + r) * H + h) * N], N,
                      &Qm[(static_cast<size_t>(l) * R + r) * N]);
        }
      }
      // scores [nq, nk] = Q K^T, masked causally and decayed by exp(Acum_l - Acum_s).
      ops::Gemm(false, true, nq, nk, N, 1.0f, Qm.data(), N, K.data(), N, 0.0f, sc.data(), nk);
      for (int i = 0; i < nq; ++i) {
        const int l = i / R;
        float* row = &sc[static_cast<size_t>(i) * nk];
        for (int j = 0; j < nk; ++j) {
          const int s = j / (2 * R);
          row[j] = s > l ? 0.0f : row[j] * std::exp(acum[l] - acum[s]);
        }
      }
      ops::Gemm(false, false, nq, P, nk, 1.0f, sc.data(), nk, V.data(), P, 0.0f, Y.data(), P);  // [nq, P]
      ops::Gemm(false, true, nq, P, N, 1.0f, Qm.data(), N, S, N, 0.0f, Yoff.data(), P);         // Q S^T
      for (int i = 0; i < nq; ++i) {
        const int l = i / R, r = i % R, s = c0 + l;
        const float e = std::exp(acum[l]), d = w_.D.data[h];
        const float* m = mx_ + (static_cast<size_t>(h) * R + r) * P;
        const float* xs = &t.x[(static_cast<size_t>(s) * H + h) * P];
        float* dst = &y[((static_cast<size_t>(s) * R + r) * H + h) * P];
        for (int p = 0; p < P; ++p)
          dst[p] = Y[static_cast<size_t>(i) * P + p] + e * Yoff[static_cast<size_t>(i) * P + p] + d * xs[p] * m[p];
      }
      // State passing: S = exp(Acum_last) S + V^T (K * exp(Acum_last - Acum_s)).
      for (int j = 0; j < nk; ++j) {
        const float e = std::exp(acum[n - 1] - acum[j / (2 * R)]);
        for (int i = 0; i < N; ++i) K[static_cast<size_t>(j) * N + i] *= e;
      }
      const float e = std::exp(acum[n - 1]);
      for (int i = 0; i < P * N; ++i) S[i] *= e;
      ops::Gemm(true, false, P, N, nk, 1.0f, V.data(), P, K.data(), N, 1.0f, S, N);
    }
  }
  const size_t last = static_cast<size_t>(L - 1);
  for (int r = 0; r < R; ++r)
    std::copy_n(&t.k[(last * R + r) * H * N], static_cast<size_t>(H) * N,
                st.k_last.ptr() + static_cast<size_t>(r) * H * N);
  std::copy_n(&t.x[last * di], di, st.x_last.ptr());
  for (int l = 0; l < L; ++l)  // o [L, d_inner]
    Output(&y[static_cast<size_t>(l) * R * H * P], &t.z[static_cast<size_t>(l) * di], o + static_cast<size_t>(l) * di);
}

Tensor Mamba3Mixer::Materialize(const float* u, int L) const {
  const int H = cfg_.n_heads, P = cfg_.head_dim, N = cfg_.state_size, R = cfg_.mimo_rank;
  Tensor M({H, L, L});
  if (L <= 0) return M;
  std::vector<float> phase(static_cast<size_t>(H) * cfg_.n_angles(), 0.0f);
  Tokens t;
  Prepare(u, L, phase.data(), &t);
  std::vector<float> wx(R), wo(R);
  for (int h = 0; h < H; ++h) {
    for (int r = 0; r < R; ++r) {  // rank weights: mean over the head dim of mimo_x / mimo_o
      double sx = 0, so = 0;
      for (int p = 0; p < P; ++p)
        sx += mx_[(static_cast<size_t>(h) * R + r) * P + p], so += mo_[(static_cast<size_t>(h) * R + r) * P + p];
      wx[r] = static_cast<float>(sx / P), wo[r] = static_cast<float>(so / P);
    }
    for (int i = 0; i < L; ++i) {
      float decay = 1.0f;  // exp(sum_{r=s+1..i} adt_r)
      for (int s = i; s >= 0; --s) {
        if (s < i) decay *= std::exp(t.adt[static_cast<size_t>(s + 1) * H + h]);
        const size_t sh = static_cast<size_t>(s) * H + h;
        float coef = t.lam[sh] * t.dt[sh];
        if (s < i) coef += (1.0f - t.lam[sh + H]) * t.dt[sh + H];
        float qk = 0.0f;
        for (int a = 0; a < R; ++a)
          for (int b = 0; b < R; ++b) {
            const float* q = &t.q[((static_cast<size_t>(i) * R + a) * H + h) * N];
            const float* k = &t.k[((static_cast<size_t>(s) * R + b) * H + h) * N];
            float d = 0.0f;
            for (int n = 0; n < N; ++n) d += q[n] * k[n];
            qk += wo[a] * wx[b] * d;
          }
        M.data[(static_cast<size_t>(h) * L + i) * L + s] = qk * coef * decay;
      }
      float skip = 0.0f;  // D x summed over the rank pairs with the same weights (1 for SISO)
      for (int r = 0; r < R; ++r) skip += wo[r] * wx[r];
      M.data[(static_cast<size_t>(h) * L + i) * L + i] += w_.D.data[h] * skip;
    }
  }
  return M;
}

Result<std::unique_ptr<Mixer>> MakeMamba3(const ModelConfig& cfg, int layer, const TensorStore& store,
                                          const std::string& prefix) {
  const Mamba3Config& c = cfg.mamba3;
  const int64_t H = c.n_heads, P = c.head_dim, R = c.mimo_rank;
  if (Status s = Mamba3Mixer::ValidateConfig(c, cfg.dim); !s.ok()) return Errorf("layer {}: {}", layer, s.message());
  Mamba3Weights w;
  auto load = [&](const std::string& name, const std::vector<int64_t>& shape, Tensor* dst) -> Status {
    auto r = store.Load(prefix + name, shape);
    if (!r.ok()) return Errorf("layer {}: {}", layer, r.status().message());
    *dst = std::move(r).value();
    return Status::Ok();
  };
  // Names and shapes from the schema's table (model/schema.h): MIMO tensors when R > 1, norm.weight
  // with output_norm; each table entry goes to the weight of the same name.
  const std::map<std::string, Tensor*> dst = {
      {"in_proj.weight", &w.in_proj}, {"dt_bias", &w.dt_bias}, {"D", &w.D},           {"B_norm.weight", &w.B_norm},
      {"C_norm.weight", &w.C_norm},   {"B_bias", &w.B_bias},   {"C_bias", &w.C_bias}, {"mimo_x", &w.mimo_x},
      {"mimo_z", &w.mimo_z},          {"mimo_o", &w.mimo_o},   {"norm.weight", &w.norm}, {"out_proj.weight", &w.out_proj}};
  for (const TensorSpec& t : MixerKindTensors(cfg, MixerKind::kMamba3)) {
    auto it = dst.find(t.name);
    if (it == dst.end()) return Errorf("internal error: mamba3 table tensor '{}' has no weight", t.name);
    SUBQ_RETURN_IF_ERROR(load(t.name, t.shape, it->second));
  }
  if (R == 1 && store.Has(prefix + "mimo_x"))  // rank-1 MIMO weights written by a MIMO checkpoint: used as given
    for (const char* n : {"mimo_x", "mimo_z", "mimo_o"}) SUBQ_RETURN_IF_ERROR(load(n, {H, R, P}, dst.at(n)));
  Status v = Mamba3Mixer::Validate(c, cfg.dim, w);
  if (!v.ok()) return Errorf("layer {} ({}): {}", layer, prefix, v.message());
  return std::unique_ptr<Mixer>(std::make_unique<Mamba3Mixer>(c, cfg.dim, std::move(w)));
}

}  // namespace subq
