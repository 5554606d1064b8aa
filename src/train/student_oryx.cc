// Oryx student mixer (mixers/oryx.h for the math; SPEC 6): the teacher's q/k/v/o, copied, serve an
// attention mode and a recurrent mode (ssd | gdn) with small extras. Which tokens run which mode is a
// mask shared by the student's Oryx layers (OryxModes): fixed when set (tests, evaluation), else in
// training drawn per batch -- a pure function of the batch (seeded from layer 0's input), so activation
// checkpointing and resumed runs see the same mask -- with a random number of attention tokens in
// [0, 2 f L] (mean fraction f = student.oryx_attention_fraction) as a prefix span plus one span elsewhere;
// without gradients and without a fixed mask every token is recurrent. Shapes: B batch, L tokens, D d_model.
#include <cmath>
#include <cstring>
#include <random>

#include "train/init.h"
#include "train/student_mixers.h"

namespace subq::train {
namespace {

constexpr double kOryxNormEps = 1e-5;  // as the engine's per-head output norm

// Rotate-half RoPE of t [B, L, heads, hd] at positions 0..L-1 (as torch_math's attention).
torch::Tensor RopeHalf(const torch::Tensor& t, const torch::Tensor& inv_freq) {
  const int64_t L = t.size(1), hd = t.size(3);
  auto pos = torch::arange(L, t.options().dtype(AtLeastF32(t).scalar_type()));
  auto freqs = torch::outer(pos, inv_freq.to(t.device()));  // [L, hd/2]
  auto cos = freqs.cos().view({1, L, 1, hd / 2}), sin = freqs.sin().view({1, L, 1, hd / 2});
  auto t1 = t.narrow(-1, 0, hd / 2), t2 = t.narrow(-1, hd / 2, hd / 2);
  return torch::cat({t1 * cos - t2 * sin, t2 * cos + t1 * sin}, -1);
}

class OryxStudent : public StudentMixer {
 public:
  OryxStudent(const StudentRecipe& s, const AttentionParams& a, int layer, std::shared_ptr<OryxModes> modes)
      : p_(a), layer_(layer), gdn_(s.oryx_recurrence == "gdn"), modes_(std::move(modes)) {
    chunk = s.chunk_size;
    p_.q = a.q.clone(), p_.k = a.k.clone(), p_.v = a.v.clone(), p_.o = a.o.clone();
    const int64_t H = a.n_heads, D = a.q.size(1);
    a_proj = torch::zeros({H, D});
    dt_bias = DtBiasInit(H);
    A_log = ALogInit(H);
    D_skip = torch::ones({H});
    b_proj = torch::zeros({H, D});
    norm_w = torch::ones({a.head_dim});
  }

  // [L] bool, true = attention.
  torch::Tensor Mask(const torch::Tensor& u) const {
    const int64_t L = u.size(1);
    auto opts = torch::TensorOptions().dtype(torch::kBool).device(u.device());
    if (modes_->fixed.defined()) return modes_->fixed.to(u.device());
    if (!torch::GradMode::is_enabled()) return torch::zeros({L}, opts);
    if (layer_ == 0 || !modes_->current.defined() || modes_->current.size(0) != L) {
      const double sum = u.detach().to(torch::kFloat64).sum().item<double>();
      uint64_t seed = 0;
      std::memcpy(&seed, &sum, sizeof(seed));
      std::mt19937_64 rng(seed ^ 0x9E3779B97F4A7C15ull);
      const int64_t max_att = std::min<int64_t>(L, std::llround(2.0 * modes_->attention_fraction * L));
      const int64_t n_att = std::uniform_int_distribution<int64_t>(0, max_att)(rng);
      const int64_t prefix = std::uniform_int_distribution<int64_t>(0, n_att)(rng), rest = n_att - prefix;
      const int64_t start = std::uniform_int_distribution<int64_t>(prefix, L - rest)(rng);
      auto m = torch::zeros({L}, torch::kBool);
      m.narrow(0, 0, prefix).fill_(true);
      m.narrow(0, start, rest).fill_(true);
      modes_->current = m.to(u.device());
    }
    return modes_->current;
  }

  struct Rec {
    torch::Tensor qh, kh, vh, dt, loga, beta;  // [B, L, H, hd] x3, [B, L, H] x3
  };
  Rec Features(const torch::Tensor& u, const torch::Tensor& qr, const torch::Tensor& kr, const torch::Tensor& v) const {
    const int g = p_.n_heads / p_.n_kv_heads;
    Rec r;
    r.qh = L2Norm(qr) / std::sqrt(double(p_.head_dim));                  // [B, L, H, hd]
    r.kh = L2Norm(kr).repeat_interleave(g, 2);                            // [B, L, H, hd]
    r.vh = v.repeat_interleave(g, 2);                                     // [B, L, H, hd]
    r.dt = torch::softplus(torch::linear(u, a_proj) + dt_bias);           // [B, L, H]
    r.loga = -torch::exp(A_log) * r.dt;                                   // [B, L, H]
    if (gdn_) r.beta = torch::sigmoid(torch::linear(u, b_proj));          // [B, L, H]
    return r;
  }

  torch::Tensor Forward(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1), H = p_.n_heads, KV = p_.n_kv_heads, hd = p_.head_dim;
    auto q = torch::linear(u, p_.q).view({B, L, H, hd});
    auto k = torch::linear(u, p_.k).view({B, L, KV, hd});
    auto v = torch::linear(u, p_.v).view({B, L, KV, hd});
    auto qr = RopeHalf(q, p_.inv_freq), kr = RopeHalf(k, p_.inv_freq);  // [B, L, *, hd]
    const auto mask = Mask(u);                                           // [L]
    torch::Tensor o;
    const bool any_att = mask.any().item<bool>(), all_att = mask.all().item<bool>();
    torch::Tensor att, rec;
    if (any_att) {  // softmax attention with GQA: [B, L, H, hd]
      auto qt = qr.transpose(1, 2), kt = kr.transpose(1, 2).repeat_interleave(H / KV, 1);
      auto vt = v.transpose(1, 2).repeat_interleave(H / KV, 1);
      att = at::scaled_dot_product_attention(qt.to(vt.scalar_type()), kt.to(vt.scalar_type()), vt, {}, 0.0, true)
                .transpose(1, 2);
    }
    if (!all_att) {
      Rec r = Features(u, qr, kr, v);
      if (gdn_) {
        rec = GatedDeltaRule(r.qh, r.kh, r.vh, r.loga, r.beta);  // [B, L, H, hd]
      } else {
        rec = SsdChunked(r.vh * r.dt.unsqueeze(-1), r.loga, r.kh, r.qh, chunk) + D_skip.view({1, 1, H, 1}) * r.vh;
      }
      rec = RmsNorm(rec, norm_w, kOryxNormEps);
    }
    o = !any_att ? rec : all_att ? att : torch::where(mask.view({1, L, 1, 1}), att, rec);
    return torch::linear(o.reshape({B, L, H * hd}), p_.o);  // [B, L, D]
  }

  // The recurrent mode's mixing matrix (stage 1 aligns it with the teacher's attention).
  torch::Tensor Materialize(const torch::Tensor& u) const override {
    const int64_t B = u.size(0), L = u.size(1), H = p_.n_heads, KV = p_.n_kv_heads, hd = p_.head_dim;
    auto qr = RopeHalf(torch::linear(u, p_.q).view({B, L, H, hd}), p_.inv_freq);
    auto kr = RopeHalf(torch::linear(u, p_.k).view({B, L, KV, hd}), p_.inv_freq);
    Rec r = Features(u, qr, kr, torch::linear(u, p_.v).view({B, L, KV, hd}));
    if (gdn_) {
      auto eye = torch::eye(L, u.options()).view({1, L, 1, L}).expand({B, L, H, L});  // one-hot values
      return GatedDeltaRule(r.qh, r.kh, eye, r.loga, r.beta).permute({0, 2, 1, 3});  // [B, H, L, L]
    }
    return SsdMatrix(r.loga, r.kh, r.qh) * r.dt.permute({0, 2, 1}).unsqueeze(2);      // [B, H, L, L]
  }

  std::vector<NamedTensor> Params() const override {
    std::vector<NamedTensor> p = {{"q_proj.weight", p_.q},          {"k_proj.weight", p_.k},
                                  {"v_proj.weight", p_.v},          {"o_proj.weight", p_.o},
                                  {"oryx_a_proj.weight", a_proj},   {"oryx_dt_bias", dt_bias},
                                  {"oryx_A_log", A_log},            {"oryx_norm.weight", norm_w}};
    p.push_back(gdn_ ? NamedTensor{"oryx_b_proj.weight", b_proj} : NamedTensor{"oryx_D", D_skip});
    return p;
  }
  int num_heads() const override { return p_.n_heads; }
  void MoveBuffers(const torch::Device& d) override { p_.inv_freq = p_.inv_freq.to(d); }

  AttentionParams p_;
  torch::Tensor a_proj, dt_bias, A_log, D_skip, b_proj, norm_w;

 private:
  int layer_;
  bool gdn_;
  std::shared_ptr<OryxModes> modes_;
};

}  // namespace

std::unique_ptr<StudentMixer> MakeOryxMixer(const StudentRecipe& s, const AttentionParams& teacher_attn, int layer,
                                            std::shared_ptr<OryxModes> modes) {
  return std::make_unique<OryxStudent>(s, teacher_attn, layer, std::move(modes));
}

}  // namespace subq::train
