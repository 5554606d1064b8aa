// Kept teacher attention layer of layer hybrids (student_mixers.h). Shapes: B batch, L tokens, D d_model.
#include <cmath>

#include "train/init.h"
#include "train/student_mixers.h"

namespace subq::train {
namespace {

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
  void MoveBuffers(const torch::Device& d) override { p_.inv_freq = p_.inv_freq.to(d); }
  AttentionParams p_;
};

}  // namespace

std::unique_ptr<StudentMixer> MakeAttentionMixer(const AttentionParams& teacher_attn) {
  AttentionParams p = teacher_attn;
  p.q = p.q.clone(), p.k = p.k.clone(), p.v = p.v.clone(), p.o = p.o.clone();
  return std::make_unique<AttentionMixer>(std::move(p));
}

}  // namespace subq::train
