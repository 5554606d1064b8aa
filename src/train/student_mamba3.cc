// Mamba-3 student mixer: SISO / MIMO, trapezoid, rotary state, output norm (student_mamba3.h, SPEC 4).
// The math is that of the engine's mixers/mamba3.cc so an exported student runs there unchanged.
#include "train/student_mamba3.h"

#include <cmath>

#include "train/init.h"
#include "train/student_mixers.h"

namespace subq::train {
namespace {

constexpr double kBcNormEps = 1e-5, kOutNormEps = 1e-5, kAFloor = 1e-4;

// The previous token's value along dim 1 (zeros before the first token), any rank >= 2.
torch::Tensor Shift(const torch::Tensor& t) {
  return torch::cat({torch::zeros_like(t.narrow(1, 0, 1)), t.narrow(1, 0, t.size(1) - 1)}, 1);
}

}  // namespace

torch::Tensor SsdMultiChunked(const torch::Tensor& v, const torch::Tensor& loga_in, const torch::Tensor& keys,
                              const torch::Tensor& q, int64_t chunk) {
  const torch::Tensor loga = AtLeastF32(loga_in);  // cumulative decays stay f32 under bf16 autocast
  const int64_t B = v.size(0), L = v.size(1), H = v.size(2), K = v.size(3), P = v.size(4);
  const int64_t R = q.size(3), N = q.size(4);
  const int64_t Q = std::min<int64_t>(chunk, L), pad = (Q - L % Q) % Q, Lp = L + pad, c = Lp / Q;
  auto padt = [&](const torch::Tensor& t) {  // zero tokens at the end of the last chunk
    if (!pad) return t;
    std::vector<int64_t> sz = t.sizes().vec();
    sz[1] = pad;
    return torch::cat({t, torch::zeros(sz, t.options())}, 1);
  };
  // [B, Lp, H, X, F] -> [B, H, c, Q*X, F]: chunk rows are (token, key/rank)
  auto chunks = [&](const torch::Tensor& t, int64_t X, int64_t F) {
    return padt(t).view({B, c, Q, H, X, F}).permute({0, 3, 1, 2, 4, 5}).reshape({B, H, c, Q * X, F});
  };
  auto vc = chunks(v, K, P), kc = chunks(keys, K, N), qc = chunks(q, R, N);  // [B,H,c,Q*K,P], [..,Q*K,N], [..,Q*R,N]
  auto ac = padt(loga).view({B, c, Q, H}).permute({0, 3, 1, 2});             // [B, H, c, Q]
  auto acum = ac.cumsum(-1);                                                   // [B, H, c, Q]
  // (1) intra-chunk: (Q K^T * exp(segsum)) V, the decay of token pairs spread over ranks and keys
  auto dec = ExpSegSumFast(ac).repeat_interleave(R, -2).repeat_interleave(K, -1);  // [B, H, c, Q*R, Q*K]
  auto y = torch::matmul(torch::matmul(qc, kc.transpose(-1, -2)) * dec, vc);      // [B, H, c, Q*R, P]
  if (c > 1) {
    // (2) state at the end of each chunk from its own keys: sum exp(acum_last - acum_s) key^T v
    auto decay = (acum.narrow(-1, Q - 1, 1) - acum).exp().repeat_interleave(K, -1);  // [B, H, c, Q*K]
    auto states = torch::matmul((kc * decay.unsqueeze(-1)).transpose(-1, -2), vc);    // [B, H, c, N, P]
    // (3) pass states across chunks
    auto totals = torch::constant_pad_nd(acum.select(-1, Q - 1), {1, 0});            // [B, H, c+1]
    auto all = torch::cat({torch::zeros({B, H, 1, N, P}, states.options()), states}, 2).view({B, H, c + 1, N * P});
    auto prev = torch::matmul(SegSum(totals).exp().to(all.scalar_type()), all).narrow(2, 0, c).view({B, H, c, N, P});
    // (4) the state entering each chunk, read by every query
    auto qdec = acum.exp().repeat_interleave(R, -1).unsqueeze(-1);  // [B, H, c, Q*R, 1]
    y = y + torch::matmul(qc * qdec, prev);                          // [B, H, c, Q*R, P]
  }
  return y.view({B, H, c, Q, R, P}).permute({0, 2, 3, 1, 4, 5}).reshape({B, Lp, H, R, P}).narrow(1, 0, L);
}

Mamba3Student::Mamba3Student(int d_model, const StudentRecipe& s)
    : D_(d_model),
      H_(s.n_v_heads),
      P_(s.head_dim),
      N_(s.d_state),
      G_(s.n_groups),
      R_(s.mimo_rank),
      NA_(static_cast<int>(s.d_state * s.rope_fraction / 2)),
      out_norm_(s.outproj_norm) {
  chunk = s.chunk_size;
  in_proj = LinearInit(rows(), D_);  // [z | x | B | C | dd_dt | dd_A | trap | angle]
  dt_bias = DtBiasInit(H_);
  Dp = torch::ones({H_});
  B_norm = torch::ones({N_});
  C_norm = torch::ones({N_});
  B_bias = torch::ones({H_, R_, N_});
  C_bias = torch::ones({H_, R_, N_});
  if (R_ > 1) {  // SPEC 4 init
    mimo_x = torch::full({H_, R_, P_}, 1.0 / R_);
    mimo_z = torch::ones({H_, R_, P_});
    mimo_o = torch::full({H_, R_, P_}, 1.0 / R_);
  }
  if (out_norm_) norm = torch::ones({d_inner()});
  out_proj = LinearInit(D_, d_inner());
}

void Mamba3Student::InitFromAttention(const AttentionParams& a) {
  torch::NoGradGuard ng;
  const int64_t di = d_inner(), GN = static_cast<int64_t>(G_) * N_, GRN = GN * R_;
  in_proj.narrow(0, di, di).copy_(RepeatKvRows(a.v, H_, a.n_kv_heads, a.head_dim));
  const torch::Tensor k = RepeatKvRows(a.k, G_, a.n_kv_heads, a.head_dim);  // [G*N, D]
  for (int r = 0; r < R_; ++r) {  // B/C rows are laid out (r, g, n)
    const double noise = r == 0 ? 0.0 : 0.1;
    in_proj.narrow(0, 2 * di + r * GN, GN).copy_(k + noise * k.std() * torch::randn_like(k));
    in_proj.narrow(0, 2 * di + GRN + r * GN, GN).copy_(a.q + noise * a.q.std() * torch::randn_like(a.q));
  }
  out_proj.copy_(a.o);
}

torch::Tensor Mamba3Student::Rotate(const torch::Tensor& v, const torch::Tensor& c, const torch::Tensor& s) const {
  if (R_ == 1) {  // SISO: interleaved pairs (2i, 2i+1), i < NA
    auto head = v.narrow(-1, 0, 2 * NA_).unflatten(-1, {NA_, 2});  // [..., NA, 2]
    auto a = head.select(-1, 0), b = head.select(-1, 1);
    auto r = torch::stack({a * c - b * s, a * s + b * c}, -1).flatten(-2);
    return torch::cat({r, v.narrow(-1, 2 * NA_, N_ - 2 * NA_)}, -1);
  }
  const int64_t half = N_ / 2;  // MIMO kernels: half-split pairs (i, i + N/2), i < NA
  auto a = v.narrow(-1, 0, NA_), b = v.narrow(-1, half, NA_);
  return torch::cat({a * c - b * s, v.narrow(-1, NA_, half - NA_), a * s + b * c, v.narrow(-1, half + NA_, half - NA_)},
                    -1);
}

Mamba3Student::Proj Mamba3Student::Project(const torch::Tensor& u) const {
  const int64_t B = u.size(0), L = u.size(1), di = d_inner(), GRN = static_cast<int64_t>(G_) * R_ * N_;
  auto pr = torch::linear(u, in_proj);  // [B, L, rows]
  Proj p;
  p.z = pr.narrow(-1, 0, di).reshape({B, L, H_, P_});
  p.x = pr.narrow(-1, di, di).reshape({B, L, H_, P_});
  // [B, L, R, G, N] normalised over N -> heads [B, L, H, R, N] (head h reads group h / (H/G))
  auto heads = [&](int64_t off, const torch::Tensor& w) {
    auto n = RmsNorm(pr.narrow(-1, off, GRN).reshape({B, L, R_, G_, N_}), w, kBcNormEps);
    return n.repeat_interleave(H_ / G_, 3).permute({0, 1, 3, 2, 4});
  };
  auto k = heads(2 * di, B_norm) + B_bias, q = heads(2 * di + GRN, C_norm) + C_bias;  // [B, L, H, R, N]
  const int64_t o = 2 * di + 2 * GRN;
  auto dt = AtLeastF32(torch::softplus(pr.narrow(-1, o, H_) + dt_bias));  // [B, L, H]
  auto dda = AtLeastF32(pr.narrow(-1, o + H_, H_));
  auto f = torch::where(dda >= 0, 1.0 + dda, 1.0 / (1.0 - dda.clamp_max(0)));  // A = -f(dd_A)
  p.adt = torch::clamp_max(-f, -kAFloor) * dt;
  auto lam = torch::sigmoid(AtLeastF32(pr.narrow(-1, o + 2 * H_, H_)));
  p.gamma = lam * dt;
  p.beta = (1.0 - lam) * dt * p.adt.exp();
  auto theta = M_PI * torch::tanh(AtLeastF32(pr.narrow(-1, o + 3 * H_, NA_)));  // [B, L, NA]
  auto phase = (dt.unsqueeze(-1) * theta.unsqueeze(2)).cumsum(1);              // [B, L, H, NA]
  phase = (phase - 2 * M_PI * torch::floor(phase / (2 * M_PI))).unsqueeze(3);  // [B, L, H, 1, NA]
  auto c = phase.cos(), s = phase.sin();
  p.k = Rotate(k, c, s), p.q = Rotate(q, c, s);
  return p;
}

torch::Tensor Mamba3Student::Values(const Proj& p) const {
  auto v = p.x.unsqueeze(3);  // [B, L, H, 1, P]
  return R_ > 1 ? v * mimo_x : v;  // [B, L, H, R, P]
}

torch::Tensor Mamba3Student::RankOutputs(const Proj& p) const {
  auto v = Values(p);                                    // [B, L, H, R, P]
  auto g = p.gamma.unsqueeze(-1).unsqueeze(-1), b = p.beta.unsqueeze(-1).unsqueeze(-1);
  auto keys = torch::cat({p.k * g, Shift(p.k) * b}, 3);  // [B, L, H, 2R, N]: gamma_t k_t, beta_t k_{t-1}
  auto vals = torch::cat({v, Shift(v)}, 3);              // [B, L, H, 2R, P]: v_t, v_{t-1}
  auto y = SsdMultiChunked(vals, p.adt, keys, p.q, chunk);  // [B, L, H, R, P]
  return y + Dp.view({1, 1, H_, 1, 1}) * v;
}

torch::Tensor Mamba3Student::RankOutputsRecurrent(const Proj& p) const {
  const int64_t B = p.x.size(0), L = p.x.size(1);
  auto v = Values(p);  // [B, L, H, R, P]
  auto h = torch::zeros({B, H_, P_, N_}, v.options());
  auto outer = [](const torch::Tensor& vt, const torch::Tensor& kt) {  // sum_r v_r k_r^T: [B, H, P, N]
    return torch::matmul(vt.transpose(-1, -2), kt);
  };
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) {
    auto vt = v.select(1, t), kt = p.k.select(1, t);  // [B, H, R, P], [B, H, R, N]
    h = p.adt.select(1, t).exp().view({B, H_, 1, 1}) * h + p.gamma.select(1, t).view({B, H_, 1, 1}) * outer(vt, kt);
    if (t > 0) h = h + p.beta.select(1, t).view({B, H_, 1, 1}) * outer(v.select(1, t - 1), p.k.select(1, t - 1));
    ys.push_back(torch::matmul(p.q.select(1, t), h.transpose(-1, -2)));  // [B, H, R, P]
  }
  return torch::stack(ys, 1) + Dp.view({1, 1, H_, 1, 1}) * v;  // [B, L, H, R, P]
}

torch::Tensor Mamba3Student::Combine(const torch::Tensor& y_in, const torch::Tensor& z) const {
  const int64_t B = z.size(0), L = z.size(1);
  torch::Tensor y = y_in;  // [B, L, H, R, P]
  if (out_norm_)           // RMSNorm over each (head, rank)'s P channels, weight per head channel
    y = y * torch::rsqrt(AtLeastF32(y).pow(2).mean(-1, true) + kOutNormEps) * norm.view({H_, 1, P_});
  torch::Tensor o;
  if (R_ > 1)
    o = (mimo_o * y * torch::silu(z.unsqueeze(3) * mimo_z)).sum(3);  // [B, L, H, P]
  else
    o = y.squeeze(3) * torch::silu(z);
  return o.reshape({B, L, d_inner()});
}

torch::Tensor Mamba3Student::Forward(const torch::Tensor& u) const {
  Proj p = Project(u);
  return torch::linear(Combine(RankOutputs(p), p.z), out_proj);  // [B, L, D]
}

torch::Tensor Mamba3Student::ForwardRecurrent(const torch::Tensor& u) const {
  Proj p = Project(u);
  return torch::linear(Combine(RankOutputsRecurrent(p), p.z), out_proj);
}

torch::Tensor Mamba3Student::PreGate(const torch::Tensor& u) const {
  Proj p = Project(u);
  auto y = RankOutputs(p);                             // [B, L, H, R, P]
  return R_ > 1 ? (mimo_o * y).sum(3) : y.squeeze(3);  // [B, L, H, P]
}

torch::Tensor Mamba3Student::Materialize(const torch::Tensor& u) const {
  Proj p = Project(u);
  torch::Tensor qbar = p.q.squeeze(3), kbar = p.k.squeeze(3), skip = Dp;  // SISO: [B, L, H, N], [H]
  if (R_ > 1) {
    qbar = (p.q * mimo_o.mean(-1, true)).sum(3);  // [B, L, H, N]
    kbar = (p.k * mimo_x.mean(-1, true)).sum(3);
    skip = Dp * (mimo_o.mean(-1) * mimo_x.mean(-1)).sum(1);  // D x with the same rank weights, [H]
  }
  auto M1 = SsdMatrix(p.adt, kbar, qbar) * p.gamma.permute({0, 2, 1}).unsqueeze(2);        // [B, H, L, L]
  auto M2 = SsdMatrix(p.adt, Shift(kbar), qbar) * p.beta.permute({0, 2, 1}).unsqueeze(2);  // column s' reads x_{s'-1}
  auto M = M1 + torch::constant_pad_nd(M2.narrow(-1, 1, M2.size(-1) - 1), {0, 1});
  return M + torch::diag_embed(skip.view({1, H_, 1}).expand({u.size(0), H_, u.size(1)}));  // D skip on the diagonal
}

std::vector<NamedTensor> Mamba3Student::Params() const {
  std::vector<NamedTensor> out = {{"in_proj.weight", in_proj}, {"dt_bias", dt_bias},   {"D", Dp},
                                  {"B_norm.weight", B_norm},   {"C_norm.weight", C_norm}, {"B_bias", B_bias},
                                  {"C_bias", C_bias}};
  if (R_ > 1) out.insert(out.end(), {{"mimo_x", mimo_x}, {"mimo_z", mimo_z}, {"mimo_o", mimo_o}});
  if (out_norm_) out.push_back({"norm.weight", norm});
  out.push_back({"out_proj.weight", out_proj});
  return out;
}

std::unique_ptr<StudentMixer> MakeMamba3Mixer(int d_model, const StudentRecipe& s, const AttentionParams* attn) {
  auto m = std::make_unique<Mamba3Student>(d_model, s);
  if (attn) m->InitFromAttention(*attn);
  return m;
}

}  // namespace subq::train
