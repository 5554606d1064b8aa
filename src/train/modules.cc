// Teacher, student mixers and students in libtorch. Shapes: B batch, L tokens, D d_model, H heads,
// P head dim, N state size, Q chunk length, c chunks.
#include "train/modules.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "train/compute.h"
#include "train/students_recurrent.h"

namespace subq::train {
namespace {

torch::Tensor FromSubq(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.ptr()), t.shape, torch::kFloat32).clone();
}

// Un-permutes q/k rows from interleaved (Meta / llama2.c) to rotate-half (HF) RoPE layout.
torch::Tensor InterleavedToRotateHalf(const torch::Tensor& w, int n_heads, int head_dim) {
  const int64_t in = w.size(1);
  return w.view({n_heads, head_dim / 2, 2, in}).transpose(1, 2).reshape({n_heads * head_dim, in}).contiguous();
}

// nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch::Tensor LinearInit(int64_t out, int64_t in) {
  const double b = 1.0 / std::sqrt(static_cast<double>(in));
  return torch::empty({out, in}).uniform_(-b, b);
}

// Depthwise conv weight that passes its input through unchanged (last tap 1).
torch::Tensor IdentityConv(int64_t channels, int64_t k) {
  auto w = torch::zeros({channels, 1, k});
  w.select(2, k - 1).fill_(1.0);
  return w;
}

// GQA: [Hkv*hd, D] -> [H*hd, D] with each kv head repeated H/Hkv times.
torch::Tensor RepeatKvRows(const torch::Tensor& w, int n_heads, int n_kv, int hd) {
  return w.view({n_kv, hd, -1}).repeat_interleave(n_heads / n_kv, 0).reshape({n_heads * hd, -1});
}

constexpr double kZBias = 1.278464542761;  // silu(1.2785) ~ 1: the gate starts open

// ---------------- Discrete Mamba-2 (SPEC 3) ----------------
class Dm2Mixer : public StudentMixer {
 public:
  Dm2Mixer(int d_model, const StudentRecipe& s)
      : D_(d_model), nqk_(s.n_qk_heads), nv_(s.n_v_heads), P_(s.head_dim), N_(s.d_state), K_(s.conv_kernel) {
    chunk = s.chunk_size;
    in_proj = LinearInit(2 * d_inner() + 2 * nqk_ * N_ + nv_, D_);   // [xBC | z | A_log]
    in_proj.narrow(0, conv_dim(), d_inner()).zero_();                  // z weights 0
    z_bias = torch::full({d_inner()}, kZBias);
    conv_w = IdentityConv(conv_dim(), K_);
    conv_b = torch::zeros({conv_dim()});
    Dp = torch::ones({nv_});
    out_proj = LinearInit(D_, d_inner());
  }
  int d_inner() const { return nv_ * P_; }
  int conv_dim() const { return d_inner() + 2 * nqk_ * N_; }

  // Attention init: C <- W_q, B <- W_k, x <- W_v (GQA heads repeated), out_proj <- W_o.
  void InitFromAttention(const AttentionParams& a) {
    torch::NoGradGuard ng;
    const int H = a.n_heads;
    in_proj.narrow(0, 0, d_inner()).copy_(RepeatKvRows(a.v, H, a.n_kv_heads, a.head_dim));
    in_proj.narrow(0, d_inner(), nqk_ * N_).copy_(RepeatKvRows(a.k, H, a.n_kv_heads, a.head_dim));
    in_proj.narrow(0, d_inner() + nqk_ * N_, nqk_ * N_).copy_(a.q);
    out_proj.copy_(a.o);
  }

  struct Proj {
    torch::Tensor x, loga, Bm, Cm, z;
  };
  Proj Project(const torch::Tensor& u) const {
    const int64_t B = u.size(0), L = u.size(1);
    auto zxa = torch::linear(u, in_proj);                                       // [B, L, rows]
    auto xbc = CausalConv(zxa.narrow(-1, 0, conv_dim()), conv_w, conv_b);      // [B, L, conv_dim], identity act
    Proj p;
    p.z = zxa.narrow(-1, conv_dim(), d_inner());                                // [B, L, d_inner]
    p.loga = -torch::softplus(zxa.narrow(-1, conv_dim() + d_inner(), nv_));    // [B, L, nv]
    p.x = xbc.narrow(-1, 0, d_inner()).reshape({B, L, nv_, P_});                // [B, L, nv, P]
    p.Bm = xbc.narrow(-1, d_inner(), nqk_ * N_).reshape({B, L, nqk_, N_});      // [B, L, nqk, N]
    p.Cm = xbc.narrow(-1, d_inner() + nqk_ * N_, nqk_ * N_).reshape({B, L, nqk_, N_});
    if (nv_ != nqk_) {
      p.Bm = p.Bm.repeat_interleave(nv_ / nqk_, 2);  // [B, L, nv, N]
      p.Cm = p.Cm.repeat_interleave(nv_ / nqk_, 2);
    }
    return p;
  }
  torch::Tensor Forward(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto y = SsdChunked(p.x, p.loga, p.Bm, p.Cm, chunk) + p.x * Dp.view({1, 1, nv_, 1});  // [B, L, nv, P]
    y = y.reshape({B, L, d_inner()}) * torch::silu(p.z + z_bias);
    return torch::linear(y, out_proj);  // [B, L, D]
  }
  torch::Tensor Materialize(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto M = SsdMatrix(p.loga, p.Bm, p.Cm);                                       // [B, nv, L, L]
    return M + torch::diag_embed(Dp.view({1, nv_, 1}).expand({B, nv_, L}));       // D on the diagonal
  }
  torch::Tensor Materialize(const torch::Tensor& u, int64_t h0, int64_t nh) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto M = SsdMatrix(p.loga.narrow(2, h0, nh), p.Bm.narrow(2, h0, nh), p.Cm.narrow(2, h0, nh));  // [B, nh, L, L]
    return M + torch::diag_embed(Dp.narrow(0, h0, nh).view({1, nh, 1}).expand({B, nh, L}));
  }
  std::vector<NamedTensor> Params() const override {
    return {{"in_proj.weight", in_proj}, {"z_bias", z_bias},  {"conv1d.weight", conv_w},
            {"conv1d.bias", conv_b},     {"D", Dp},           {"out_proj.weight", out_proj}};
  }
  int num_heads() const override { return nv_; }

  torch::Tensor in_proj, z_bias, conv_w, conv_b, Dp, out_proj;

 private:
  int D_, nqk_, nv_, P_, N_, K_;
};

// ---------------- Mamba-2 (SPEC 2, HF layout; gated norm per group as mamba_ssm / transformers 5) ----------------
class Mamba2Mixer : public StudentMixer {
 public:
  Mamba2Mixer(int d_model, const StudentRecipe& s, double eps)
      : D_(d_model), H_(s.n_v_heads), P_(s.head_dim), N_(s.d_state), G_(s.n_groups), K_(s.conv_kernel), eps_(eps) {
    chunk = s.chunk_size;
    in_proj = LinearInit(2 * d_inner() + 2 * G_ * N_ + H_, D_);  // [z | xBC | dt]
    conv_w = IdentityConv(conv_dim(), K_);
    conv_b = torch::zeros({conv_dim()});
    auto dt = torch::exp(torch::rand({H_}) * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3)).clamp_min(1e-4);
    dt_bias = dt + torch::log(-torch::expm1(-dt));
    A_log = torch::log(torch::rand({H_}) * 15.0 + 1.0);
    Dp = torch::ones({H_});
    norm_w = torch::ones({d_inner()});
    out_proj = LinearInit(D_, d_inner());
  }
  int d_inner() const { return H_ * P_; }
  int conv_dim() const { return d_inner() + 2 * G_ * N_; }
  void InitFromAttention(const AttentionParams& a) {
    torch::NoGradGuard ng;
    const int H = a.n_heads, off = d_inner();
    in_proj.narrow(0, off, d_inner()).copy_(RepeatKvRows(a.v, H, a.n_kv_heads, a.head_dim));
    in_proj.narrow(0, off + d_inner(), G_ * N_).copy_(RepeatKvRows(a.k, H, a.n_kv_heads, a.head_dim));
    in_proj.narrow(0, off + d_inner() + G_ * N_, G_ * N_).copy_(a.q);
    out_proj.copy_(a.o);
  }
  struct Proj {
    torch::Tensor x, dt, loga, Bm, Cm, z;
  };
  Proj Project(const torch::Tensor& u) const {
    const int64_t B = u.size(0), L = u.size(1);
    auto zxd = torch::linear(u, in_proj);  // [B, L, rows]
    Proj p;
    p.z = zxd.narrow(-1, 0, d_inner());
    auto xbc = torch::silu(CausalConv(zxd.narrow(-1, d_inner(), conv_dim()), conv_w, conv_b));
    p.dt = torch::softplus(zxd.narrow(-1, d_inner() + conv_dim(), H_) + dt_bias);  // [B, L, H]
    p.loga = p.dt * (-torch::exp(A_log));
    p.x = xbc.narrow(-1, 0, d_inner()).reshape({B, L, H_, P_});
    p.Bm = xbc.narrow(-1, d_inner(), G_ * N_).reshape({B, L, G_, N_}).repeat_interleave(H_ / G_, 2);
    p.Cm = xbc.narrow(-1, d_inner() + G_ * N_, G_ * N_).reshape({B, L, G_, N_}).repeat_interleave(H_ / G_, 2);
    return p;
  }
  torch::Tensor Forward(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto y = SsdChunked(p.x * p.dt.unsqueeze(-1), p.loga, p.Bm, p.Cm, chunk) + p.x * Dp.view({1, 1, H_, 1});
    y = y.reshape({B, L, d_inner()}) * torch::silu(p.z);  // gate before the norm
    // grouped RMSNorm (group size d_inner / G) as mamba_ssm and transformers >= 5 (engine: norm_grouped)
    auto yg = y.view({B, L, G_, d_inner() / G_});
    yg = yg * torch::rsqrt(yg.pow(2).mean(-1, /*keepdim=*/true) + eps_);
    return torch::linear(yg.reshape({B, L, d_inner()}) * norm_w, out_proj);
  }
  torch::Tensor Materialize(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto M = SsdMatrix(p.loga, p.Bm, p.Cm) * p.dt.permute({0, 2, 1}).unsqueeze(2);  // [B, H, L, L] * dt_j
    return M + torch::diag_embed(Dp.view({1, H_, 1}).expand({B, H_, L}));
  }
  torch::Tensor Materialize(const torch::Tensor& u, int64_t h0, int64_t nh) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto M = SsdMatrix(p.loga.narrow(2, h0, nh), p.Bm.narrow(2, h0, nh), p.Cm.narrow(2, h0, nh)) *
             p.dt.narrow(2, h0, nh).permute({0, 2, 1}).unsqueeze(2);  // [B, nh, L, L] * dt_j
    return M + torch::diag_embed(Dp.narrow(0, h0, nh).view({1, nh, 1}).expand({B, nh, L}));
  }
  std::vector<NamedTensor> Params() const override {
    return {{"in_proj.weight", in_proj}, {"conv1d.weight", conv_w}, {"conv1d.bias", conv_b}, {"dt_bias", dt_bias},
            {"A_log", A_log},            {"D", Dp},                 {"norm.weight", norm_w}, {"out_proj.weight", out_proj}};
  }
  int num_heads() const override { return H_; }

  torch::Tensor in_proj, conv_w, conv_b, dt_bias, A_log, Dp, norm_w, out_proj;

 private:
  int D_, H_, P_, N_, G_, K_;
  double eps_;
};

// ---------------- kept teacher attention (hybrids) ----------------
class AttentionMixer : public StudentMixer {
 public:
  explicit AttentionMixer(AttentionParams p) : p_(std::move(p)) {}
  torch::Tensor Forward(const torch::Tensor& u) const override { return Attention(p_, u, nullptr); }
  torch::Tensor Materialize(const torch::Tensor& u) const override {
    torch::Tensor probs;
    Attention(p_, u, &probs);
    return probs;
  }
  std::vector<NamedTensor> Params() const override {
    return {{"q_proj.weight", p_.q}, {"k_proj.weight", p_.k}, {"v_proj.weight", p_.v}, {"o_proj.weight", p_.o}};
  }
  bool is_attention() const override { return true; }
  int num_heads() const override { return p_.n_heads; }
  AttentionParams p_;
};

}  // namespace

// ---------------- shared math ----------------
torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

torch::Tensor SwiGlu(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& up,
                     const torch::Tensor& down) {
  return torch::linear(torch::silu(torch::linear(x, gate)) * torch::linear(x, up), down);
}

torch::Tensor SegSum(const torch::Tensor& a) {
  const int64_t T = a.size(-1);
  auto sizes = a.sizes().vec();
  sizes.push_back(T);
  auto x = a.unsqueeze(-1).expand(sizes);  // x[..., i, j] = a[i]
  auto strict = torch::tril(torch::ones({T, T}, a.options().dtype(torch::kBool)), -1);
  auto s = x.masked_fill(strict.logical_not(), 0.0).cumsum(-2);  // s[i, j] = a[j+1] + ... + a[i]
  auto lower = torch::tril(torch::ones({T, T}, a.options().dtype(torch::kBool)), 0);
  return s.masked_fill(lower.logical_not(), -std::numeric_limits<double>::infinity());
}

// exp(segsum(a)) from differences of one cumsum: fewer passes than SegSum, exact enough inside a chunk
// (|cumsum| stays small). Masked before exp so no inf reaches autograd.
torch::Tensor ExpSegSumFast(const torch::Tensor& a) {
  const int64_t T = a.size(-1);
  auto c = a.cumsum(-1);
  auto upper = torch::triu(torch::ones({T, T}, a.options().dtype(torch::kBool)), 1);
  return (c.unsqueeze(-1) - c.unsqueeze(-2)).masked_fill(upper, -std::numeric_limits<double>::infinity()).exp();
}

torch::Tensor CausalConv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  const int64_t L = x.size(1), K = w.size(2), C = x.size(2);
  auto y = torch::conv1d(x.transpose(1, 2), w, b, /*stride=*/1, /*padding=*/K - 1, /*dilation=*/1, /*groups=*/C);
  return y.narrow(2, 0, L).transpose(1, 2);  // [B, L, C]
}

torch::Tensor AtLeastF32(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf ? t.to(torch::kFloat32) : t;
}

torch::Tensor SsdChunked(const torch::Tensor& x, const torch::Tensor& loga_in, const torch::Tensor& Bm,
                         const torch::Tensor& Cm, int64_t chunk) {
  const torch::Tensor loga = AtLeastF32(loga_in);  // cumulative decays stay f32 under bf16 autocast
  const int64_t B = x.size(0), L = x.size(1), H = x.size(2), P = x.size(3), N = Bm.size(3);
  const int64_t Q = std::min<int64_t>(chunk, L), pad = (Q - L % Q) % Q, Lp = L + pad, c = Lp / Q;
  auto xp = pad ? torch::constant_pad_nd(x, {0, 0, 0, 0, 0, pad}) : x;
  auto ap = pad ? torch::constant_pad_nd(loga, {0, 0, 0, pad}) : loga;
  auto bp = pad ? torch::constant_pad_nd(Bm, {0, 0, 0, 0, 0, pad}) : Bm;
  auto cp = pad ? torch::constant_pad_nd(Cm, {0, 0, 0, 0, 0, pad}) : Cm;
  auto xc = xp.view({B, c, Q, H, P}).permute({0, 3, 1, 2, 4});  // [B, H, c, Q, P]
  auto bc = bp.view({B, c, Q, H, N}).permute({0, 3, 1, 2, 4});  // [B, H, c, Q, N]
  auto cc = cp.view({B, c, Q, H, N}).permute({0, 3, 1, 2, 4});  // [B, H, c, Q, N]
  auto ac = ap.view({B, c, Q, H}).permute({0, 3, 1, 2});        // [B, H, c, Q]
  auto acum = ac.cumsum(-1);                                    // [B, H, c, Q]
  // (1) intra-chunk: Y_diag = (C B^T * exp(segsum)) X
  auto y = torch::matmul(torch::matmul(cc, bc.transpose(-1, -2)) * ExpSegSumFast(ac), xc);  // [B, H, c, Q, P]
  if (c > 1) {
    // (2) state at the end of each chunk from its own tokens: sum_s exp(acum_last - acum_s) B_s^T X_s
    auto decay = (acum.narrow(-1, Q - 1, 1) - acum).exp();                                 // [B, H, c, Q]
    auto states = torch::matmul((bc * decay.unsqueeze(-1)).transpose(-1, -2), xc);         // [B, H, c, N, P]
    // (3) pass states across chunks: S_z = sum_{c' < z} exp(total decay of chunks c'..z-1) states_c'
    auto totals = torch::constant_pad_nd(acum.select(-1, Q - 1), {1, 0});                 // [B, H, c+1]
    auto all = torch::cat({torch::zeros({B, H, 1, N, P}, x.options()), states}, 2).view({B, H, c + 1, N * P});
    auto prev = torch::matmul(SegSum(totals).exp(), all).narrow(2, 0, c).view({B, H, c, N, P});
    // (4) contribution of the state entering each chunk
    y = y + torch::matmul(cc * acum.exp().unsqueeze(-1), prev);                             // [B, H, c, Q, P]
  }
  return y.permute({0, 2, 3, 1, 4}).reshape({B, Lp, H, P}).narrow(1, 0, L);  // [B, L, H, P]
}

torch::Tensor SsdMatrix(const torch::Tensor& loga, const torch::Tensor& Bm, const torch::Tensor& Cm) {
  auto scores = torch::matmul(Cm.permute({0, 2, 1, 3}), Bm.permute({0, 2, 3, 1}));  // [B, H, L, L]
  return scores * ExpSegSumFast(AtLeastF32(loga).permute({0, 2, 1}));
}

torch::Tensor SsdRecurrent(const torch::Tensor& x, const torch::Tensor& loga, const torch::Tensor& Bm,
                           const torch::Tensor& Cm) {
  const int64_t B = x.size(0), L = x.size(1), H = x.size(2), P = x.size(3), N = Bm.size(3);
  auto h = torch::zeros({B, H, P, N}, x.options());
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) {
    auto a = loga.select(1, t).exp().view({B, H, 1, 1});
    h = a * h + x.select(1, t).unsqueeze(-1) * Bm.select(1, t).unsqueeze(-2);  // [B, H, P, N]
    ys.push_back(torch::matmul(h, Cm.select(1, t).unsqueeze(-1)).squeeze(-1));  // [B, H, P]
  }
  return torch::stack(ys, 1);  // [B, L, H, P]
}

torch::Tensor MatrixOrientationLoss(const torch::Tensor& student_m, const torch::Tensor& teacher_p) {
  return (AtLeastF32(student_m) - AtLeastF32(teacher_p)).pow(2).sum({-2, -1}).sqrt().mean();  // [B, H, L, L] -> scalar
}

torch::Tensor HiddenStateLoss(const torch::Tensor& student_out, const torch::Tensor& teacher_out) {
  return (AtLeastF32(student_out) - AtLeastF32(teacher_out)).pow(2).sum(-1).sqrt().mean();  // [B, L, D] -> scalar
}

torch::Tensor SoftCrossEntropy(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double T) {
  auto target = torch::softmax(AtLeastF32(teacher_logits) / T, -1);                        // [B, L, V]
  return -(target * torch::log_softmax(AtLeastF32(student_logits) / T, -1)).sum(-1).mean();
}

torch::Tensor InvFreq(const AttentionConfig& a) {
  const int half = a.head_dim / 2;
  auto inv = torch::empty({half}, torch::kFloat64);
  const auto& rs = a.rope_scaling;
  for (int i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(a.rope_theta), -2.0 * i / a.head_dim);
    if (rs.type == "llama3") {
      const double orig = rs.original_max_position_embeddings, wavelen = 2 * M_PI / f;
      if (wavelen > orig / rs.low_freq_factor) {
        f /= rs.factor;
      } else if (wavelen >= orig / rs.high_freq_factor) {
        const double s = (orig / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - s) * f / rs.factor + s * f;
      }
    }
    inv[i] = f;
  }
  return inv.to(torch::kFloat32);
}

namespace {

// Rotate-half RoPE of t [B, L, heads, hd] at positions 0..L-1.
torch::Tensor Rope(const torch::Tensor& t, const torch::Tensor& inv_freq) {
  const int64_t L = t.size(1), hd = t.size(3);
  auto pos = torch::arange(L, t.options().dtype(AtLeastF32(t).scalar_type()));
  auto freqs = torch::outer(pos, inv_freq.to(t.device()));  // [L, hd/2]
  auto cos = freqs.cos().view({1, L, 1, hd / 2}), sin = freqs.sin().view({1, L, 1, hd / 2});
  auto t1 = t.narrow(-1, 0, hd / 2), t2 = t.narrow(-1, hd / 2, hd / 2);
  return torch::cat({t1 * cos - t2 * sin, t2 * cos + t1 * sin}, -1);
}

torch::Tensor CausalSoftmax(const torch::Tensor& q, const torch::Tensor& k, int64_t hd) {
  const int64_t L = q.size(2);
  auto s = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(hd));  // [B, H, L, L]
  auto mask = torch::triu(torch::ones({L, L}, q.options().dtype(torch::kBool)), 1);
  return torch::softmax(AtLeastF32(s).masked_fill(mask, -std::numeric_limits<double>::infinity()), -1);
}

}  // namespace

torch::Tensor AttentionProbs(const AttentionParams& p, const torch::Tensor& u, int64_t h0, int64_t nh) {
  const int64_t B = u.size(0), L = u.size(1), H = p.n_heads, Hkv = p.n_kv_heads, hd = p.head_dim;
  auto q = Rope(torch::linear(u, p.q.narrow(0, h0 * hd, nh * hd)).view({B, L, nh, hd}), p.inv_freq);  // [B, L, nh, hd]
  auto k = Rope(torch::linear(u, p.k).view({B, L, Hkv, hd}), p.inv_freq);                             // [B, L, Hkv, hd]
  auto kv_of = torch::div(torch::arange(h0, h0 + nh, torch::TensorOptions().dtype(torch::kInt64).device(u.device())),
                          H / Hkv, "floor");  // kv head of each query head
  k = k.index_select(2, kv_of);                                                                        // [B, L, nh, hd]
  return CausalSoftmax(q.transpose(1, 2), k.transpose(1, 2), hd);                                      // [B, nh, L, L]
}

torch::Tensor Attention(const AttentionParams& p, const torch::Tensor& u, torch::Tensor* probs) {
  const int64_t B = u.size(0), L = u.size(1), H = p.n_heads, Hkv = p.n_kv_heads, hd = p.head_dim;
  auto q = Rope(torch::linear(u, p.q).view({B, L, H, hd}), p.inv_freq).transpose(1, 2);                  // [B, H, L, hd]
  auto k = Rope(torch::linear(u, p.k).view({B, L, Hkv, hd}), p.inv_freq).transpose(1, 2).repeat_interleave(H / Hkv, 1);
  auto v = torch::linear(u, p.v).view({B, L, Hkv, hd}).transpose(1, 2).repeat_interleave(H / Hkv, 1);  // [B, H, L, hd]
  torch::Tensor o;
  if (probs) {
    *probs = CausalSoftmax(q, k, hd);  // [B, H, L, L]
    o = torch::matmul(probs->to(v.scalar_type()), v);
  } else {
    o = at::scaled_dot_product_attention(q.to(v.scalar_type()), k.to(v.scalar_type()), v, {}, 0.0, /*is_causal=*/true);
  }
  return torch::linear(o.transpose(1, 2).reshape({B, L, H * hd}), p.o);  // [B, L, D]
}

// ---------------- teacher ----------------
Result<std::unique_ptr<Teacher>> Teacher::Load(const std::string& path) {
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(path));
  const ModelConfig& c = ck.config;
  if (c.family != "llama") return Errorf("{}: teacher must be a Llama-family model, got family '{}'", path, c.family);
  for (const auto& l : c.layers)
    if (l.mixer != MixerKind::kAttention || !l.attention_heads.empty())
      return Errorf("{}: teacher layers must all be softmax attention", path);
  if (c.hidden_dim <= 0) return Errorf("{}: teacher has no MLP (hidden_dim 0)", path);
  auto t = std::make_unique<Teacher>();
  t->path = path;
  t->cfg_ = c;
  const auto& a = c.attn;
  const int64_t D = c.dim, F = c.hidden_dim, V = c.vocab_size, hd = a.head_dim;
  auto load = [&](const std::string& name, std::vector<int64_t> shape) -> Result<torch::Tensor> {
    SUBQ_ASSIGN_OR_RETURN(Tensor x, ck.tensors.Load(name, shape));
    return FromSubq(x);
  };
  SUBQ_ASSIGN_OR_RETURN(t->embed, load("model.embed_tokens.weight", {V, D}));
  SUBQ_ASSIGN_OR_RETURN(t->final_norm, load("model.norm.weight", {D}));
  if (c.tie_embeddings || !ck.tensors.Has("lm_head.weight")) {
    t->lm_head = t->embed;
    t->cfg_.tie_embeddings = true;
  } else {
    SUBQ_ASSIGN_OR_RETURN(t->lm_head, load("lm_head.weight", {V, D}));
  }
  const torch::Tensor inv = InvFreq(a);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    TeacherLayer L;
    SUBQ_ASSIGN_OR_RETURN(L.in_norm, load(p + "input_layernorm.weight", {D}));
    SUBQ_ASSIGN_OR_RETURN(L.mlp_norm, load(p + "post_attention_layernorm.weight", {D}));
    SUBQ_ASSIGN_OR_RETURN(L.gate, load(p + "mlp.gate_proj.weight", {F, D}));
    SUBQ_ASSIGN_OR_RETURN(L.up, load(p + "mlp.up_proj.weight", {F, D}));
    SUBQ_ASSIGN_OR_RETURN(L.down, load(p + "mlp.down_proj.weight", {D, F}));
    L.attn.n_heads = a.n_heads;
    L.attn.n_kv_heads = a.n_kv_heads;
    L.attn.head_dim = a.head_dim;
    L.attn.inv_freq = inv;
    SUBQ_ASSIGN_OR_RETURN(L.attn.q, load(p + "self_attn.q_proj.weight", {a.n_heads * hd, D}));
    SUBQ_ASSIGN_OR_RETURN(L.attn.k, load(p + "self_attn.k_proj.weight", {a.n_kv_heads * hd, D}));
    SUBQ_ASSIGN_OR_RETURN(L.attn.v, load(p + "self_attn.v_proj.weight", {a.n_kv_heads * hd, D}));
    SUBQ_ASSIGN_OR_RETURN(L.attn.o, load(p + "self_attn.o_proj.weight", {D, a.n_heads * hd}));
    if (a.rope_interleaved) {
      L.attn.q = InterleavedToRotateHalf(L.attn.q, a.n_heads, hd);
      L.attn.k = InterleavedToRotateHalf(L.attn.k, a.n_kv_heads, hd);
    }
    t->layers.push_back(std::move(L));
  }
  t->cfg_.attn.rope_interleaved = false;  // weights are rotate-half from here on
  return t;
}

void Teacher::To(const torch::Device& d) {
  const bool tied = lm_head.is_same(embed);
  embed = embed.to(d);
  final_norm = final_norm.to(d);
  lm_head = tied ? embed : lm_head.to(d);
  for (auto& L : layers) {
    for (auto* x : {&L.in_norm, &L.mlp_norm, &L.gate, &L.up, &L.down, &L.attn.q, &L.attn.k, &L.attn.v, &L.attn.o})
      *x = x->to(d);
  }
}

torch::Tensor Teacher::Forward(const torch::Tensor& ids, Trace* trace, bool want_probs) const {
  torch::NoGradGuard ng;
  auto x = torch::embedding(embed, ids);  // [B, L, D]
  for (const auto& L : layers) {
    if (trace) trace->inputs.push_back(x);
    torch::Tensor probs;
    x = x + Attention(L.attn, RmsNorm(x, L.in_norm, cfg_.norm_eps), want_probs ? &probs : nullptr);
    if (trace && want_probs) trace->probs.push_back(probs);
    x = x + SwiGlu(RmsNorm(x, L.mlp_norm, cfg_.norm_eps), L.gate, L.up, L.down);
  }
  if (trace) trace->inputs.push_back(x);
  return torch::linear(RmsNorm(x, final_norm, cfg_.norm_eps), lm_head);  // [B, L, vocab]
}

// ---------------- students ----------------
std::unique_ptr<StudentMixer> MakeDm2Mixer(int d_model, const StudentRecipe& s) {
  return std::make_unique<Dm2Mixer>(d_model, s);
}

Result<std::unique_ptr<Student>> Student::FromTeacher(const Teacher& t, const StudentRecipe& s, uint64_t seed) {
  const ModelConfig& c = t.config();
  const auto& a = c.attn;
  for (int l : s.attention_layers)
    if (l < 0 || l >= c.n_layers)
      return Errorf("student.attention_layers: layer {} is out of range (teacher has {} layers)", l, c.n_layers);
  if (static_cast<int>(s.attention_layers.size()) == c.n_layers)
    return Errorf("student.attention_layers keeps all {} layers: nothing to distill", c.n_layers);
  const int d_inner = s.n_v_heads * s.head_dim;
  const bool gdn = s.kind == "gated_deltanet";
  if (!gdn && d_inner % c.dim != 0)
    return Errorf("student d_inner = n_v_heads x head_dim = {} must be a multiple of the teacher's d_model {}",
                  d_inner, c.dim);
  if (s.init == "attention") {
    const bool grouped = s.kind == "mamba2" || s.kind == "mamba3";
    const int qk = grouped ? s.n_groups : s.n_qk_heads;  // DM2 and Gated DeltaNet: n_qk_heads
    if (s.n_v_heads != a.n_heads || qk != a.n_heads || s.head_dim != a.head_dim || s.d_state != a.head_dim)
      return Errorf(
          "attention init needs the student's heads to map onto the teacher's: n_v_heads = {} = {} = {} (teacher "
          "heads) and head_dim = d_state = teacher head_dim {}; got n_v_heads {}, {} {}, head_dim {}, d_state {}",
          grouped ? "n_groups" : "n_qk_heads", "n_v_heads", a.n_heads, a.head_dim, s.n_v_heads,
          grouped ? "n_groups" : "n_qk_heads", qk, s.head_dim, s.d_state);
  }
  torch::manual_seed(seed);
  auto st = std::make_unique<Student>();
  st->spec = s;
  st->cfg = c;
  const bool dm2 = s.kind == "discrete_mamba2";
  if (gdn) {  // fla GatedDeltaNetForCausalLM (engine family gated_deltanet)
    st->prefix_ = "model.layers.";
    st->embed_key_ = "model.embeddings.weight";
    st->final_norm_key_ = "model.norm.weight";
    st->in_norm_key_ = "attn_norm.weight";
    st->mlp_norm_key_ = "mlp_norm.weight";
    st->mixer_key_ = "attn.";
  } else if (s.kind == "mamba3") {  // mamba_ssm MambaLMHeadModel (engine family mamba3)
    st->prefix_ = "backbone.layers.";
    st->embed_key_ = "backbone.embedding.weight";
    st->final_norm_key_ = "backbone.norm_f.weight";
    st->in_norm_key_ = "norm.weight";
    st->mlp_norm_key_ = "norm2.weight";
  } else if (dm2) {
    st->prefix_ = "backbone.layers.";
    st->embed_key_ = "backbone.embedding.weight";
    st->final_norm_key_ = "backbone.final_layernorm.weight";
    st->in_norm_key_ = "input_layernorm.weight";
    st->mlp_norm_key_ = "post_attention_layernorm.weight";
  } else {
    st->prefix_ = "backbone.layers.";
    st->embed_key_ = "backbone.embeddings.weight";
    st->final_norm_key_ = "backbone.norm_f.weight";
    st->in_norm_key_ = "norm.weight";
    st->mlp_norm_key_ = "norm2.weight";
  }
  st->embed = t.embed.clone();
  st->final_norm = t.final_norm.clone();
  st->lm_head = c.tie_embeddings ? st->embed : t.lm_head.clone();
  for (int l = 0; l < c.n_layers; ++l) {
    const TeacherLayer& T = t.layers[l];
    StudentLayer L;
    L.in_norm = T.in_norm.clone();
    L.mlp_norm = T.mlp_norm.clone();
    L.gate = T.gate.clone();
    L.up = T.up.clone();
    L.down = T.down.clone();
    const bool keep = std::find(s.attention_layers.begin(), s.attention_layers.end(), l) != s.attention_layers.end();
    if (keep) {
      AttentionParams p = T.attn;
      p.q = p.q.clone(), p.k = p.k.clone(), p.v = p.v.clone(), p.o = p.o.clone();
      L.mixer = std::make_unique<AttentionMixer>(std::move(p));
    } else if (gdn) {
      L.mixer = MakeGatedDeltaNetMixer(c.dim, s, c.norm_eps, s.init == "attention" ? &T.attn : nullptr);
    } else if (s.kind == "mamba3") {
      L.mixer = MakeMamba3Mixer(c.dim, s, s.init == "attention" ? &T.attn : nullptr);
    } else if (dm2) {
      auto m = std::make_unique<Dm2Mixer>(c.dim, s);
      if (s.init == "attention") m->InitFromAttention(T.attn);
      L.mixer = std::move(m);
    } else {
      auto m = std::make_unique<Mamba2Mixer>(c.dim, s, c.norm_eps);
      if (s.init == "attention") m->InitFromAttention(T.attn);
      L.mixer = std::move(m);
    }
    st->layers.push_back(std::move(L));
  }
  return st;
}

torch::Tensor Student::MixerOnInput(int l, const torch::Tensor& x) const {
  return layers[l].mixer->Forward(RmsNorm(x, layers[l].in_norm, cfg.norm_eps));
}

torch::Tensor Student::MaterializeOnInput(int l, const torch::Tensor& x) const {
  return layers[l].mixer->Materialize(RmsNorm(x, layers[l].in_norm, cfg.norm_eps));
}

torch::Tensor Student::MaterializeOnInput(int l, const torch::Tensor& x, int64_t h0, int64_t nh) const {
  return layers[l].mixer->Materialize(RmsNorm(x, layers[l].in_norm, cfg.norm_eps), h0, nh);
}

torch::Tensor Student::Block(int l, const torch::Tensor& x) const {
  const StudentLayer& L = layers[l];
  auto h = x + MixerOnInput(l, x);
  return h + SwiGlu(RmsNorm(h, L.mlp_norm, cfg.norm_eps), L.gate, L.up, L.down);
}

torch::Tensor Student::Logits(const torch::Tensor& ids) const {
  auto x = torch::embedding(embed, ids);  // [B, L, D]
  for (int l = 0; l < static_cast<int>(layers.size()); ++l) {
    if (!checkpoint_blocks) {
      x = Block(l, x);
      continue;
    }
    const StudentLayer& L = layers[l];
    std::vector<torch::Tensor> params{L.in_norm, L.mlp_norm, L.gate, L.up, L.down};
    for (auto& m : L.mixer->Params()) params.push_back(m.t);
    x = CheckpointedCall([this, l](const torch::Tensor& in) { return Block(l, in); }, x, params);
  }
  return torch::linear(RmsNorm(x, final_norm, cfg.norm_eps), lm_head);  // [B, L, vocab]
}

std::vector<NamedTensor> Student::Params() const {
  std::vector<NamedTensor> out{{embed_key_, embed}};
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& L = layers[l];
    const std::string p = prefix_ + std::to_string(l) + ".";
    out.push_back({p + in_norm_key_, L.in_norm});
    for (auto& m : L.mixer->Params()) out.push_back({p + mixer_key_ + m.name, m.t});
    out.push_back({p + mlp_norm_key_, L.mlp_norm});
    out.push_back({p + "mlp.gate_proj.weight", L.gate});
    out.push_back({p + "mlp.up_proj.weight", L.up});
    out.push_back({p + "mlp.down_proj.weight", L.down});
  }
  out.push_back({final_norm_key_, final_norm});
  if (!cfg.tie_embeddings) out.push_back({"lm_head.weight", lm_head});
  return out;
}

bool Student::IsKeptAttentionParam(const std::string& name) const {
  for (size_t l = 0; l < layers.size(); ++l)
    if (layers[l].mixer->is_attention() && name.rfind(prefix_ + std::to_string(l) + "." + mixer_key_, 0) == 0)
      return true;
  return false;
}

void Student::To(const torch::Device& d) {
  // Mixer tensors are members of the mixer objects: move them in place through their Params() handles.
  auto move = [&](torch::Tensor& t) { t.set_data(t.data().to(d)); };
  const bool tied = lm_head.is_same(embed);
  for (auto& nt : Params()) {
    torch::Tensor t = nt.t;  // shares the TensorImpl: set_data moves the member too
    move(t);
  }
  if (tied) lm_head = embed;
  for (auto& L : layers)
    if (L.mixer->is_attention()) {
      auto& p = static_cast<AttentionMixer*>(L.mixer.get())->p_;
      p.inv_freq = p.inv_freq.to(d);
    }
}

std::string Student::ConfigJson() const {
  using nlohmann::ordered_json;
  const auto& s = spec;
  ordered_json j;
  std::vector<int> attn_layers = s.attention_layers;
  std::sort(attn_layers.begin(), attn_layers.end());
  const int expand = s.n_v_heads * s.head_dim / cfg.dim;
  if (s.kind == "gated_deltanet") {  // read by io/hf_config_gated_deltanet.cc
    j["model_type"] = "gated_deltanet";
    j["architectures"] = {"GatedDeltaNetForCausalLM"};
    j["hidden_size"] = cfg.dim;
    j["num_hidden_layers"] = cfg.n_layers;
    j["vocab_size"] = cfg.vocab_size;
    j["num_heads"] = s.n_qk_heads;
    j["num_v_heads"] = s.n_v_heads;
    j["head_dim"] = s.head_dim;
    j["expand_v"] = static_cast<double>(s.d_state) / s.head_dim;  // recipe checks it is exact in f32
    j["conv_size"] = s.conv_kernel;
    j["norm_eps"] = cfg.norm_eps;
    j["intermediate_size"] = cfg.hidden_dim;
    j["hidden_act"] = "swish";
    j["use_gate"] = true;
    j["use_short_conv"] = true;
    j["allow_neg_eigval"] = false;
    j["tie_word_embeddings"] = cfg.tie_embeddings;
    j["max_position_embeddings"] = cfg.max_seq_len;
  } else if (s.kind == "mamba3") {  // read by io/hf_config_mamba3.cc
    j["model_type"] = "mamba3";
    j["d_model"] = cfg.dim;
    j["d_intermediate"] = 0;
    j["n_layer"] = cfg.n_layers;
    j["vocab_size"] = cfg.vocab_size;
    j["pad_vocab_size_multiple"] = 1;
    j["tie_embeddings"] = cfg.tie_embeddings;
    j["norm_epsilon"] = cfg.norm_eps;
    j["rms_norm"] = true;
    j["ssm_cfg"] = {{"layer", "Mamba3"},     {"d_state", s.d_state},      {"expand", expand},
                    {"headdim", s.head_dim}, {"ngroups", s.n_groups},     {"rope_fraction", 0.5},
                    {"is_mimo", false},      {"chunk_size", s.chunk_size}, {"is_outproj_norm", false}};
    j["mlp_cfg"] = {{"intermediate_size", cfg.hidden_dim}, {"bias", false}, {"act_fn", "silu"}};
  } else if (s.kind == "discrete_mamba2") {
    j["model_type"] = "llamba";
    j["architectures"] = {"LlambaForCausalLM"};
    j["d_model"] = cfg.dim;
    j["n_layer"] = cfg.n_layers;
    j["vocab_size"] = cfg.vocab_size;
    j["pad_vocab_size_multiple"] = 1;
    j["tie_embeddings"] = cfg.tie_embeddings;
    j["lm_head_bias"] = false;
    j["norm_epsilon"] = cfg.norm_eps;
    j["ssm_cfg"] = {{"d_state", s.d_state},       {"n_qk_heads", s.n_qk_heads}, {"n_v_heads", s.n_v_heads},
                    {"d_conv", s.conv_kernel},    {"expand", expand},           {"chunk_size", s.chunk_size},
                    {"activation", "identity"},   {"bias", false},              {"conv_bias", true}};
    j["mlp_cfg"] = {{"intermediate_size", cfg.hidden_dim}, {"bias", false}, {"act_fn", "silu"}};
  } else {
    j["model_type"] = "mamba2";
    j["architectures"] = {"Mamba2ForCausalLM"};
    j["hidden_size"] = cfg.dim;
    j["num_hidden_layers"] = cfg.n_layers;
    j["vocab_size"] = cfg.vocab_size;
    j["tie_word_embeddings"] = cfg.tie_embeddings;
    j["layer_norm_epsilon"] = cfg.norm_eps;
    j["num_heads"] = s.n_v_heads;
    j["head_dim"] = s.head_dim;
    j["state_size"] = s.d_state;
    j["n_groups"] = s.n_groups;
    j["conv_kernel"] = s.conv_kernel;
    j["expand"] = expand;
    j["chunk_size"] = s.chunk_size;
    j["use_conv_bias"] = true;
    j["use_bias"] = false;
    j["rms_norm"] = true;
    j["norm_before_gate"] = false;
    j["residual_in_fp32"] = true;
    j["mlp_cfg"] = {{"intermediate_size", cfg.hidden_dim}, {"bias", false}, {"act_fn", "silu"}};
  }
  if (!attn_layers.empty()) {
    j["attention_layers"] = attn_layers;
    j["attn_cfg"] = {{"num_heads", cfg.attn.n_heads},
                     {"num_key_value_heads", cfg.attn.n_kv_heads},
                     {"head_dim", cfg.attn.head_dim},
                     {"rope_theta", cfg.attn.rope_theta}};
  }
  j["bos_token_id"] = cfg.bos_id;
  j["eos_token_id"] = cfg.eos_id;
  j["torch_dtype"] = "float32";
  return j.dump(2);
}

}  // namespace subq::train
