// Discrete Mamba-2 student mixer (SPEC 3, Llamba layout) (student_mixers.h). Shapes: B batch, L tokens, D d_model.
#include <cmath>
#include <optional>

#include "train/init.h"
#include "train/student_mixers.h"

namespace subq::train {
namespace {

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
    if (kept) y = kept->Replace(y, u);  // head hybrid: kept heads' attention replaces their SSM output
    y = y.reshape({B, L, d_inner()}) * torch::silu(p.z + z_bias);
    return torch::linear(y, out_proj);  // [B, L, D]
  }
  torch::Tensor Materialize(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto M = SsdMatrix(p.loga, p.Bm, p.Cm);                                       // [B, nv, L, L]
    M = M + torch::diag_embed(Dp.view({1, nv_, 1}).expand({B, nv_, L}));          // D on the diagonal
    return kept ? kept->ReplaceMatrices(M, u, 0, nv_) : M;
  }
  torch::Tensor Materialize(const torch::Tensor& u, int64_t h0, int64_t nh) const override {
    const int64_t B = u.size(0), L = u.size(1);
    Proj p = Project(u);
    auto M = SsdMatrix(p.loga.narrow(2, h0, nh), p.Bm.narrow(2, h0, nh), p.Cm.narrow(2, h0, nh));  // [B, nh, L, L]
    M = M + torch::diag_embed(Dp.narrow(0, h0, nh).view({1, nh, 1}).expand({B, nh, L}));
    return kept ? kept->ReplaceMatrices(M, u, h0, nh) : M;
  }
  std::vector<NamedTensor> Params() const override {
    std::vector<NamedTensor> p{{"in_proj.weight", in_proj}, {"z_bias", z_bias},  {"conv1d.weight", conv_w},
                               {"conv1d.bias", conv_b},     {"D", Dp},           {"out_proj.weight", out_proj}};
    if (kept)
      for (auto& k : kept->Params()) p.push_back(k);
    return p;
  }
  void MoveBuffers(const torch::Device& d) override {
    if (kept) kept->MoveBuffers(d);
  }
  int num_heads() const override { return nv_; }

  torch::Tensor in_proj, z_bias, conv_w, conv_b, Dp, out_proj;
  std::optional<KeptHeads> kept;  // head hybrid

 private:
  int D_, nqk_, nv_, P_, N_, K_;
};

}  // namespace

std::unique_ptr<StudentMixer> MakeDm2Mixer(int d_model, const StudentRecipe& s, const AttentionParams* attn,
                                           const AttentionParams* teacher_attn, std::vector<int> kept) {
  auto m = std::make_unique<Dm2Mixer>(d_model, s);
  if (attn) m->InitFromAttention(*attn);
  if (!kept.empty() && teacher_attn) m->kept = KeptHeads::FromTeacher(*teacher_attn, std::move(kept));
  return m;
}

}  // namespace subq::train
