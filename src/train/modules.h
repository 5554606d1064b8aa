// Torch modules of the distillation: the Llama teacher (with access to each layer's input residual
// stream, attention probabilities and block output) and the students (Discrete Mamba-2, Mamba-2, and
// layer-level hybrids that keep chosen teacher attention layers). Weights are plain tensors listed under
// the names of the engine's export format, so checkpointing, optimiser groups and export walk one list.
// All RoPE here is HF rotate-half (interleaved checkpoints are un-permuted when the teacher is built).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "train/recipe.h"
#include "util/status.h"

namespace subq::train {

// ---- math shared by teacher and students (exposed for tests) ----
// bf16/f16 tensors (autocast outputs) as f32; others unchanged. Decays, softmaxes and losses use it.
torch::Tensor AtLeastF32(const torch::Tensor& t);
torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps);  // over the last dim
torch::Tensor SwiGlu(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& up,
                     const torch::Tensor& down);
// segsum(a)[..., i, j] = a[j+1] + ... + a[i] for i >= j, -inf above the diagonal. a: [..., T] -> [..., T, T].
torch::Tensor SegSum(const torch::Tensor& a);
// Depthwise causal conv over time: x [B, L, C], w [C, 1, K], b [C] -> [B, L, C].
torch::Tensor CausalConv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);
// Scalar-decay SSD (Mamba-2 / DM2 core) in chunks of Q: x [B,L,H,P], loga [B,L,H] (log decay <= 0),
// Bm, Cm [B,L,H,N]. y_t = sum_{s<=t} (C_t . B_s) exp(sum_{r=s+1..t} loga_r) x_s -> [B,L,H,P].
torch::Tensor SsdChunked(const torch::Tensor& x, const torch::Tensor& loga, const torch::Tensor& Bm,
                         const torch::Tensor& Cm, int64_t chunk);
// The same as an explicit [B,H,L,L] matrix M[t,s] (no D term).
torch::Tensor SsdMatrix(const torch::Tensor& loga, const torch::Tensor& Bm, const torch::Tensor& Cm);
// The same by the plain recurrence h_t = a_t h_{t-1} + x_t B_t^T, y_t = h_t C_t (test oracle).
torch::Tensor SsdRecurrent(const torch::Tensor& x, const torch::Tensor& loga, const torch::Tensor& Bm,
                           const torch::Tensor& Cm);

// ---- stage losses (SPEC 6) ----
// Stage 1: Frobenius norm of (student M - teacher attention probabilities) per (batch, head), averaged.
torch::Tensor MatrixOrientationLoss(const torch::Tensor& student_m, const torch::Tensor& teacher_p);
// Stage 2: mean over tokens of the L2 norm (over d_model) of (student block out - teacher block out).
torch::Tensor HiddenStateLoss(const torch::Tensor& student_out, const torch::Tensor& teacher_out);
// Stage 3: cross-entropy of student_logits / T against softmax(teacher_logits / T), mean over tokens.
torch::Tensor SoftCrossEntropy(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double T);

struct NamedTensor {
  std::string name;  // name in the exported checkpoint
  torch::Tensor t;
};

// Softmax attention with rotate-half RoPE and GQA.
struct AttentionParams {
  torch::Tensor q, k, v, o;  // [H*hd, D], [Hkv*hd, D], [Hkv*hd, D], [D, H*hd]
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  torch::Tensor inv_freq;  // [hd/2] (f64 on CPU; llama3 scaling already applied)
};
torch::Tensor InvFreq(const AttentionConfig& a);
// u [B, L, D] -> [B, L, D]; with probs, also writes the attention probabilities [B, H, L, L].
torch::Tensor Attention(const AttentionParams& p, const torch::Tensor& u, torch::Tensor* probs);
// The attention probabilities of heads [h0, h0 + nh) only: u [B, L, D] -> [B, nh, L, L].
torch::Tensor AttentionProbs(const AttentionParams& p, const torch::Tensor& u, int64_t h0, int64_t nh);

// ---- teacher ----
struct TeacherLayer {
  torch::Tensor in_norm, mlp_norm, gate, up, down;
  AttentionParams attn;
};

class Teacher {
 public:
  // Reads any checkpoint the engine reads (HF folder, llama2.c .bin, GGUF) of the llama family.
  static Result<std::unique_ptr<Teacher>> Load(const std::string& path);
  void To(const torch::Device& d);

  // Residual streams: inputs[l] enters layer l (inputs[n_layers] leaves the last block); probs[l] is
  // layer l's attention [B, H, L, L] when want_probs. Returns logits [B, L, vocab]. No grad.
  struct Trace {
    std::vector<torch::Tensor> inputs, probs;
  };
  torch::Tensor Forward(const torch::Tensor& ids, Trace* trace = nullptr, bool want_probs = false) const;

  const ModelConfig& config() const { return cfg_; }
  std::string path;
  ModelConfig cfg_;
  torch::Tensor embed, final_norm, lm_head;  // lm_head aliases embed when tied
  std::vector<TeacherLayer> layers;
};

// ---- students ----
// A student mixer: forward for stages 2-3 and the materialised [B, H, L, L] mixing matrix for stage 1.
class StudentMixer {
 public:
  virtual ~StudentMixer() = default;
  virtual torch::Tensor Forward(const torch::Tensor& u) const = 0;      // [B, L, D] -> [B, L, D]
  virtual torch::Tensor Materialize(const torch::Tensor& u) const = 0;  // [B, L, D] -> [B, H, L, L]
  // Heads [h0, h0 + nh) only -> [B, nh, L, L]. Mixers that can, build only those heads' matrices.
  virtual torch::Tensor Materialize(const torch::Tensor& u, int64_t h0, int64_t nh) const {
    return Materialize(u).narrow(1, h0, nh);
  }
  virtual std::vector<NamedTensor> Params() const = 0;  // names relative to the mixer prefix ("mixer." / "attn.")
  virtual bool is_attention() const { return false; }
  virtual int num_heads() const = 0;
  int chunk = 64;  // training chunk length of the scan
};

struct StudentLayer {
  torch::Tensor in_norm, mlp_norm, gate, up, down;
  std::unique_ptr<StudentMixer> mixer;
};

class Student {
 public:
  // Copies embeddings, norms, MLPs and LM head from the teacher and builds the mixers (random or
  // attention init; SPEC 3). Errors when attention init cannot map student heads onto teacher heads.
  static Result<std::unique_ptr<Student>> FromTeacher(const Teacher& t, const StudentRecipe& s, uint64_t seed);

  torch::Tensor Logits(const torch::Tensor& ids) const;                  // [B, L] -> [B, L, vocab]
  torch::Tensor Block(int l, const torch::Tensor& x) const;               // x + mixer + MLP, [B, L, D]
  torch::Tensor MixerOnInput(int l, const torch::Tensor& x) const;        // mixer(RmsNorm(x)) only
  torch::Tensor MaterializeOnInput(int l, const torch::Tensor& x) const;  // [B, H, L, L]
  torch::Tensor MaterializeOnInput(int l, const torch::Tensor& x, int64_t h0, int64_t nh) const;  // [B, nh, L, L]
  bool is_attention(int l) const { return layers[l].mixer->is_attention(); }

  // Every parameter under its export name (Llamba, Mamba-2 or fla Gated DeltaNet layout); tied lm_head listed once.
  std::vector<NamedTensor> Params() const;
  bool IsMixerParam(const std::string& name) const { return name.find("." + mixer_key_) != std::string::npos; }
  // A weight of a kept teacher attention layer (hybrids).
  bool IsKeptAttentionParam(const std::string& name) const;
  bool IsMlpParam(const std::string& name) const {
    return name.find(".mlp.") != std::string::npos || name.find(mlp_norm_key_) != std::string::npos;
  }
  // config.json of the export.
  std::string ConfigJson() const;
  void To(const torch::Device& d);

  StudentRecipe spec;
  bool checkpoint_blocks = false;  // Logits recomputes each block in backward (train/compute.h)
  ModelConfig cfg;  // copied from the teacher (dims, vocab, norm eps, attention config for hybrids)
  torch::Tensor embed, final_norm, lm_head;
  std::vector<StudentLayer> layers;

 private:
  std::string prefix_, embed_key_, final_norm_key_, in_norm_key_, mlp_norm_key_, mixer_key_ = "mixer.";
};

// Builds the Discrete Mamba-2 mixer directly (tests): d_model, recipe dims, random init with `gen`.
std::unique_ptr<StudentMixer> MakeDm2Mixer(int d_model, const StudentRecipe& s);

}  // namespace subq::train
