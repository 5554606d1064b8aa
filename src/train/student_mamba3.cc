// Mamba-3 SISO student mixer (SPEC 4; mamba_ssm Mamba3 names, no output norm, rope_fraction 0.5) (student_mixers.h). Shapes: B batch, L tokens, D d_model.
#include <cmath>

#include "train/init.h"
#include "train/student_mixers.h"

namespace subq::train {
namespace {

constexpr double kBcNormEps = 1e-5, kAFloor = 1e-4;

class Mamba3Student : public StudentMixer {
 public:
  Mamba3Student(int d_model, const StudentRecipe& s)
      : D_(d_model), H_(s.n_v_heads), P_(s.head_dim), N_(s.d_state), G_(s.n_groups), NA_(s.d_state / 4) {
    chunk = s.chunk_size;
    in_proj = LinearInit(rows(), D_);  // [z | x | B | C | dd_dt | dd_A | trap | angle]
    dt_bias = DtBiasInit(H_);
    Dp = torch::ones({H_});
    B_norm = torch::ones({N_});
    C_norm = torch::ones({N_});
    B_bias = torch::ones({H_, 1, N_});
    C_bias = torch::ones({H_, 1, N_});
    out_proj = LinearInit(D_, d_inner());
  }
  int64_t d_inner() const { return static_cast<int64_t>(H_) * P_; }
  int64_t rows() const { return 2 * d_inner() + 2 * G_ * N_ + 3 * H_ + NA_; }

  // x <- W_v, B <- W_k (kv heads repeated), C <- W_q, out_proj <- W_o (G = H, N = P = teacher head_dim).
  void InitFromAttention(const AttentionParams& a) {
    torch::NoGradGuard ng;
    const int64_t di = d_inner(), GN = static_cast<int64_t>(G_) * N_;
    in_proj.narrow(0, di, di).copy_(RepeatKvRows(a.v, H_, a.n_kv_heads, a.head_dim));
    in_proj.narrow(0, 2 * di, GN).copy_(RepeatKvRows(a.k, G_, a.n_kv_heads, a.head_dim));
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
  // The L x L map x -> pre-gate y of each head, D skip on the diagonal (y = M x, as the engine).
  torch::Tensor Materialize(const torch::Tensor& u) const override {
    Proj p = Project(u);
    auto M1 = SsdMatrix(p.adt, p.k, p.q) * p.gamma.permute({0, 2, 1}).unsqueeze(2);          // [B, H, L, L]
    auto M2 = SsdMatrix(p.adt, Shift(p.k), p.q) * p.beta.permute({0, 2, 1}).unsqueeze(2);    // column s' reads x_{s'-1}
    auto M = M1 + torch::constant_pad_nd(M2.narrow(-1, 1, M2.size(-1) - 1), {0, 1});
    return M + torch::diag_embed(Dp.view({1, H_, 1}).expand({u.size(0), H_, u.size(1)}));
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

std::unique_ptr<StudentMixer> MakeMamba3Mixer(int d_model, const StudentRecipe& s, const AttentionParams* attn) {
  auto m = std::make_unique<Mamba3Student>(d_model, s);
  if (attn) m->InitFromAttention(*attn);
  return m;
}

}  // namespace subq::train
