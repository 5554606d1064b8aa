// Gated DeltaNet student mixer (SPEC 5, fla layout); Hk q/k heads, Hv v-heads, dk/dv head dims, K conv taps (student_mixers.h). Shapes: B batch, L tokens, D d_model.
#include <cmath>

#include "train/init.h"
#include "train/student_mixers.h"

namespace subq::train {
namespace {

class GatedDeltaNetStudent : public StudentMixer {
 public:
  GatedDeltaNetStudent(int d_model, const StudentRecipe& s, double eps)
      : D_(d_model), Hk_(s.n_qk_heads), Hv_(s.n_v_heads), dk_(s.head_dim), dv_(s.d_state), K_(s.conv_kernel),
        eps_(eps) {
    chunk = s.chunk_size;
    q_proj = LinearInit(Ck(), D_);
    k_proj = LinearInit(Ck(), D_);
    v_proj = LinearInit(Cv(), D_);
    a_proj = LinearInit(Hv_, D_);
    b_proj = LinearInit(Hv_, D_);
    A_log = ALogInit(Hv_);
    dt_bias = DtBiasInit(Hv_);
    q_conv = IdentityConv(Ck(), K_);
    k_conv = IdentityConv(Ck(), K_);
    v_conv = IdentityConv(Cv(), K_);
    g_proj = LinearInit(Cv(), D_);
    o_norm = torch::ones({dv_});
    o_proj = LinearInit(D_, Cv());
  }
  int64_t Ck() const { return static_cast<int64_t>(Hk_) * dk_; }
  int64_t Cv() const { return static_cast<int64_t>(Hv_) * dv_; }

  // q <- W_q, k <- W_k, v <- W_v (kv heads repeated), o <- W_o. FromTeacher checked the dims.
  void InitFromAttention(const AttentionParams& a) {
    torch::NoGradGuard ng;
    q_proj.copy_(RepeatKvRows(a.q, Hk_, a.n_heads, a.head_dim));
    k_proj.copy_(RepeatKvRows(a.k, Hk_, a.n_kv_heads, a.head_dim));
    v_proj.copy_(RepeatKvRows(a.v, Hv_, a.n_kv_heads, a.head_dim));
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

}  // namespace

std::unique_ptr<StudentMixer> MakeGatedDeltaNetMixer(int d_model, const StudentRecipe& s, double eps,
                                                     const AttentionParams* attn) {
  auto m = std::make_unique<GatedDeltaNetStudent>(d_model, s, eps);
  if (attn) m->InitFromAttention(*attn);
  return m;
}

}  // namespace subq::train
