// Gated DeltaNet student (students_recurrent.h). Shapes: B batch, L tokens, D d_model, Hk q/k heads,
// Hv v-heads, dk key head dim, dv value head dim, K conv taps.
#include "train/students_recurrent.h"

#include <cmath>

namespace subq::train {
namespace {

constexpr double kL2Eps = 1e-6;  // fla l2norm: x / sqrt(sum x^2 + eps), as the engine

torch::Tensor LinearInitR(int64_t out, int64_t in) {
  const double b = 1.0 / std::sqrt(static_cast<double>(in));
  return torch::empty({out, in}).uniform_(-b, b);
}

torch::Tensor IdentityConvR(int64_t channels, int64_t k) {
  auto w = torch::zeros({channels, 1, k});
  w.select(2, k - 1).fill_(1.0);
  return w;
}

torch::Tensor RepeatRows(const torch::Tensor& w, int n_heads, int n_kv, int hd) {
  return w.view({n_kv, hd, -1}).repeat_interleave(n_heads / n_kv, 0).reshape({n_heads * hd, -1});
}

torch::Tensor L2Norm(const torch::Tensor& x) { return x * torch::rsqrt(x.pow(2).sum(-1, true) + kL2Eps); }

class GatedDeltaNetStudent : public StudentMixer {
 public:
  GatedDeltaNetStudent(int d_model, const StudentRecipe& s, double eps)
      : D_(d_model), Hk_(s.n_qk_heads), Hv_(s.n_v_heads), dk_(s.head_dim), dv_(s.d_state), K_(s.conv_kernel),
        eps_(eps) {
    chunk = s.chunk_size;
    q_proj = LinearInitR(Ck(), D_);
    k_proj = LinearInitR(Ck(), D_);
    v_proj = LinearInitR(Cv(), D_);
    a_proj = LinearInitR(Hv_, D_);
    b_proj = LinearInitR(Hv_, D_);
    A_log = torch::log(torch::rand({Hv_}) * 15.0 + 1.0);  // log U(1, 16)
    auto dt = torch::exp(torch::rand({Hv_}) * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3)).clamp_min(1e-4);
    dt_bias = dt + torch::log(-torch::expm1(-dt));  // softplus^-1(dt), SPEC 2
    q_conv = IdentityConvR(Ck(), K_);
    k_conv = IdentityConvR(Ck(), K_);
    v_conv = IdentityConvR(Cv(), K_);
    g_proj = LinearInitR(Cv(), D_);
    o_norm = torch::ones({dv_});
    o_proj = LinearInitR(D_, Cv());
  }
  int64_t Ck() const { return static_cast<int64_t>(Hk_) * dk_; }
  int64_t Cv() const { return static_cast<int64_t>(Hv_) * dv_; }

  // q <- W_q, k <- W_k, v <- W_v (kv heads repeated), o <- W_o. FromTeacher checked the dims.
  void InitFromAttention(const AttentionParams& a) {
    torch::NoGradGuard ng;
    q_proj.copy_(RepeatRows(a.q, Hk_, a.n_heads, a.head_dim));
    k_proj.copy_(RepeatRows(a.k, Hk_, a.n_kv_heads, a.head_dim));
    v_proj.copy_(RepeatRows(a.v, Hv_, a.n_kv_heads, a.head_dim));
    o_proj.copy_(a.o);
  }

  struct Proj {
    torch::Tensor q, k, v, g, beta, gate;
  };
  Proj Project(const torch::Tensor& u) const {
    const int64_t B = u.size(0), L = u.size(1);
    const int rep = Hv_ / Hk_;
    auto conv = [&](const torch::Tensor& w, const torch::Tensor& x) {
      return torch::silu(CausalConv(x, w, torch::Tensor()));  // no bias, SiLU after
    };
    Proj p;
    p.q = L2Norm(conv(q_conv, torch::linear(u, q_proj)).view({B, L, Hk_, dk_})) / std::sqrt(double(dk_));
    p.k = L2Norm(conv(k_conv, torch::linear(u, k_proj)).view({B, L, Hk_, dk_}));  // [B, L, Hk, dk]
    if (rep > 1) p.q = p.q.repeat_interleave(rep, 2), p.k = p.k.repeat_interleave(rep, 2);  // [B, L, Hv, dk]
    p.v = conv(v_conv, torch::linear(u, v_proj)).view({B, L, Hv_, dv_});                 // [B, L, Hv, dv]
    p.gate = torch::linear(u, g_proj);                                                   // [B, L, Cv]
    p.g = -torch::exp(A_log) * torch::softplus(torch::linear(u, a_proj) + dt_bias);      // [B, L, Hv]
    p.beta = torch::sigmoid(torch::linear(u, b_proj));                                   // [B, L, Hv]
    return p;
  }
  torch::Tensor Forward(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto o = GatedDeltaRule(p.q, p.k, p.v, p.g, p.beta);  // [B, L, Hv, dv]
    o = RmsNorm(o, o_norm, eps_).reshape({B, L, Cv()}) * torch::silu(p.gate);
    return torch::linear(o, o_proj);  // [B, L, D]
  }
  // o = M v before the output norm and gate: run the rule on one-hot values (v_s = e_s).
  torch::Tensor Materialize(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto eye = torch::eye(L, u.options()).view({1, L, 1, L}).expand({B, L, Hv_, L});  // [B, L, Hv, L]
    return GatedDeltaRule(p.q, p.k, eye, p.g, p.beta).permute({0, 2, 1, 3});           // [B, Hv, L(t), L(s)]
  }
  std::vector<NamedTensor> Params() const override {
    return {{"q_proj.weight", q_proj},  {"k_proj.weight", k_proj},     {"v_proj.weight", v_proj},
            {"a_proj.weight", a_proj},  {"b_proj.weight", b_proj},     {"A_log", A_log},
            {"dt_bias", dt_bias},       {"q_conv1d.weight", q_conv},   {"k_conv1d.weight", k_conv},
            {"v_conv1d.weight", v_conv}, {"g_proj.weight", g_proj},    {"o_norm.weight", o_norm},
            {"o_proj.weight", o_proj}};
  }
  int num_heads() const override { return Hv_; }

  torch::Tensor q_proj, k_proj, v_proj, a_proj, b_proj, A_log, dt_bias, q_conv, k_conv, v_conv, g_proj, o_norm, o_proj;

 private:
  int D_, Hk_, Hv_, dk_, dv_, K_;
  double eps_;
};

// ---------------- Mamba-3 SISO (SPEC 4; mamba_ssm Mamba3 names, no output norm, rope_fraction 0.5) ----------------
constexpr double kBcNormEps = 1e-5, kAFloor = 1e-4;

class Mamba3Student : public StudentMixer {
 public:
  Mamba3Student(int d_model, const StudentRecipe& s)
      : D_(d_model), H_(s.n_v_heads), P_(s.head_dim), N_(s.d_state), G_(s.n_groups), NA_(s.d_state / 4) {
    chunk = s.chunk_size;
    in_proj = LinearInitR(rows(), D_);  // [z | x | B | C | dd_dt | dd_A | trap | angle]
    auto dt = torch::exp(torch::rand({H_}) * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3)).clamp_min(1e-4);
    dt_bias = dt + torch::log(-torch::expm1(-dt));
    Dp = torch::ones({H_});
    B_norm = torch::ones({N_});
    C_norm = torch::ones({N_});
    B_bias = torch::ones({H_, 1, N_});
    C_bias = torch::ones({H_, 1, N_});
    out_proj = LinearInitR(D_, d_inner());
  }
  int64_t d_inner() const { return static_cast<int64_t>(H_) * P_; }
  int64_t rows() const { return 2 * d_inner() + 2 * G_ * N_ + 3 * H_ + NA_; }

  // x <- W_v, B <- W_k (kv heads repeated), C <- W_q, out_proj <- W_o (G = H, N = P = teacher head_dim).
  void InitFromAttention(const AttentionParams& a) {
    torch::NoGradGuard ng;
    const int64_t di = d_inner(), GN = static_cast<int64_t>(G_) * N_;
    in_proj.narrow(0, di, di).copy_(RepeatRows(a.v, H_, a.n_kv_heads, a.head_dim));
    in_proj.narrow(0, 2 * di, GN).copy_(RepeatRows(a.k, G_, a.n_kv_heads, a.head_dim));
    in_proj.narrow(0, 2 * di + GN, GN).copy_(a.q);
    out_proj.copy_(a.o);
  }

  struct Proj {
    torch::Tensor z, x, q, k, adt, gamma, beta;  // [B,L,di], [B,L,H,P], [B,L,H,N] x2, [B,L,H] x3
  };
  Proj Project(const torch::Tensor& u) const {
    const int64_t B = u.size(0), L = u.size(1), di = d_inner(), GN = static_cast<int64_t>(G_) * N_;
    auto pr = torch::linear(u, in_proj);  // [B, L, rows]
    Proj p;
    p.z = pr.narrow(-1, 0, di);
    p.x = pr.narrow(-1, di, di).reshape({B, L, H_, P_});
    auto bn = RmsNorm(pr.narrow(-1, 2 * di, GN).reshape({B, L, G_, N_}), B_norm, kBcNormEps);
    auto cn = RmsNorm(pr.narrow(-1, 2 * di + GN, GN).reshape({B, L, G_, N_}), C_norm, kBcNormEps);
    bn = bn.repeat_interleave(H_ / G_, 2), cn = cn.repeat_interleave(H_ / G_, 2);  // [B, L, H, N]
    auto k = bn + B_bias.view({1, 1, H_, N_}), q = cn + C_bias.view({1, 1, H_, N_});
    const int64_t o = 2 * di + 2 * GN;
    auto dt = torch::softplus(pr.narrow(-1, o, H_) + dt_bias);  // [B, L, H]
    auto dda = pr.narrow(-1, o + H_, H_);
    auto f = torch::where(dda >= 0, 1.0 + dda, 1.0 / (1.0 - dda.clamp_max(0)));  // A = -f(dd_A)
    p.adt = torch::clamp_max(-f, -kAFloor) * dt;
    auto lam = torch::sigmoid(pr.narrow(-1, o + 2 * H_, H_));
    p.gamma = lam * dt;
    p.beta = (1.0 - lam) * dt * p.adt.exp();
    auto theta = M_PI * torch::tanh(pr.narrow(-1, o + 3 * H_, NA_));     // [B, L, NA]
    auto phase = (dt.unsqueeze(-1) * theta.unsqueeze(2)).cumsum(1);      // [B, L, H, NA]
    phase = phase - 2 * M_PI * torch::floor(phase / (2 * M_PI));
    auto c = phase.cos(), s = phase.sin();
    auto rot = [&](const torch::Tensor& v) {  // interleaved pairs (2i, 2i+1), i < NA
      auto head = v.narrow(-1, 0, 2 * NA_).reshape({B, L, H_, NA_, 2});
      auto a = head.select(-1, 0), b = head.select(-1, 1);
      auto r = torch::stack({a * c - b * s, a * s + b * c}, -1).reshape({B, L, H_, 2 * NA_});
      return torch::cat({r, v.narrow(-1, 2 * NA_, N_ - 2 * NA_)}, -1);
    };
    p.k = rot(k), p.q = rot(q);
    return p;
  }
  // The previous token's (x, k) shifted into place (zeros before the first token).
  static torch::Tensor Shift(const torch::Tensor& t) {
    return torch::constant_pad_nd(t, {0, 0, 0, 0, 1, 0}).narrow(1, 0, t.size(1));
  }
  torch::Tensor Forward(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    // Trapezoid as two SSD inputs per token, stacked on the head axis: gamma_t x_t k_t and beta_t x_{t-1} k_{t-1}.
    auto x2 = torch::cat({p.x * p.gamma.unsqueeze(-1), Shift(p.x) * p.beta.unsqueeze(-1)}, 2);  // [B, L, 2H, P]
    auto y2 = SsdChunked(x2, torch::cat({p.adt, p.adt}, 2), torch::cat({p.k, Shift(p.k)}, 2),
                         torch::cat({p.q, p.q}, 2), chunk);
    auto y = y2.narrow(2, 0, H_) + y2.narrow(2, H_, H_) + p.x * Dp.view({1, 1, H_, 1});  // [B, L, H, P]
    return torch::linear(y.reshape({B, L, d_inner()}) * torch::silu(p.z), out_proj);
  }
  // The L x L map x -> pre-gate y of each head without the D skip (as the engine).
  torch::Tensor Materialize(const torch::Tensor& u) const override {
    Proj p = Project(u);
    auto M1 = SsdMatrix(p.adt, p.k, p.q) * p.gamma.permute({0, 2, 1}).unsqueeze(2);          // [B, H, L, L]
    auto M2 = SsdMatrix(p.adt, Shift(p.k), p.q) * p.beta.permute({0, 2, 1}).unsqueeze(2);    // column s' reads x_{s'-1}
    return M1 + torch::constant_pad_nd(M2.narrow(-1, 1, M2.size(-1) - 1), {0, 1});
  }
  std::vector<NamedTensor> Params() const override {
    return {{"in_proj.weight", in_proj}, {"dt_bias", dt_bias}, {"D", Dp},           {"B_norm.weight", B_norm},
            {"C_norm.weight", C_norm},   {"B_bias", B_bias},   {"C_bias", C_bias}, {"out_proj.weight", out_proj}};
  }
  int num_heads() const override { return H_; }

  torch::Tensor in_proj, dt_bias, Dp, B_norm, C_norm, B_bias, C_bias, out_proj;

 private:
  int D_, H_, P_, N_, G_, NA_;
};

}  // namespace

torch::Tensor GatedDeltaRule(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& g, const torch::Tensor& beta) {
  const int64_t B = q.size(0), L = q.size(1), H = q.size(2), dk = q.size(3), dv = v.size(3);
  auto S = torch::zeros({B, H, dk, dv}, v.options());
  std::vector<torch::Tensor> os;
  os.reserve(L);
  for (int64_t t = 0; t < L; ++t) {
    auto kt = k.select(1, t).unsqueeze(-1);                            // [B, H, dk, 1]
    S = S * g.select(1, t).exp().view({B, H, 1, 1});                   // decay
    auto pred = torch::matmul(S.transpose(-1, -2), kt).squeeze(-1);    // S^T k [B, H, dv]
    auto upd = beta.select(1, t).unsqueeze(-1) * (v.select(1, t) - pred);
    S = S + kt * upd.unsqueeze(-2);                                    // [B, H, dk, dv]
    os.push_back(torch::matmul(S.transpose(-1, -2), q.select(1, t).unsqueeze(-1)).squeeze(-1));  // [B, H, dv]
  }
  return torch::stack(os, 1);  // [B, L, H, dv]
}

std::unique_ptr<StudentMixer> MakeGatedDeltaNetMixer(int d_model, const StudentRecipe& s, double eps,
                                                     const AttentionParams* attn) {
  auto m = std::make_unique<GatedDeltaNetStudent>(d_model, s, eps);
  if (attn) m->InitFromAttention(*attn);
  return m;
}

std::unique_ptr<StudentMixer> MakeMamba3Mixer(int d_model, const StudentRecipe& s, const AttentionParams* attn) {
  auto m = std::make_unique<Mamba3Student>(d_model, s);
  if (attn) m->InitFromAttention(*attn);
  return m;
}

}  // namespace subq::train
