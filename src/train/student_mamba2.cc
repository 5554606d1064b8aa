// Mamba-2 student mixer (SPEC 2, HF layout; gated norm per group as mamba_ssm / transformers 5) (student_mixers.h). Shapes: B batch, L tokens, D d_model.
#include <cmath>

#include "train/init.h"
#include "train/student_mixers.h"

namespace subq::train {
namespace {

class Mamba2Mixer : public StudentMixer {
 public:
  Mamba2Mixer(int d_model, const StudentRecipe& s, double eps)
      : D_(d_model), H_(s.n_v_heads), P_(s.head_dim), N_(s.d_state), G_(s.n_groups), K_(s.conv_kernel), eps_(eps) {
    chunk = s.chunk_size;
    in_proj = LinearInit(2 * d_inner() + 2 * G_ * N_ + H_, D_);  // [z | xBC | dt]
    conv_w = IdentityConv(conv_dim(), K_);
    conv_b = torch::zeros({conv_dim()});
    dt_bias = DtBiasInit(H_);
    A_log = ALogInit(H_);
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

}  // namespace

std::unique_ptr<StudentMixer> MakeMamba2Mixer(int d_model, const StudentRecipe& s, double eps,
                                              const AttentionParams* attn) {
  auto m = std::make_unique<Mamba2Mixer>(d_model, s, eps);
  if (attn) m->InitFromAttention(*attn);
  return m;
}

}  // namespace subq::train
