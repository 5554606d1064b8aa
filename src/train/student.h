// Students: the teacher's embeddings, norms, MLPs and LM head around one mixer per layer (Discrete
// Mamba-2, Mamba-2, Mamba-3, Gated DeltaNet, or a kept teacher attention layer in layer hybrids). Weights
// are plain tensors listed under the names of the engine's export format, so checkpointing, optimiser
// groups and export walk one list. The mixers live in student_<kind>.cc (student_mixers.h).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/schema.h"
#include "train/recipe.h"
#include "train/teacher.h"
#include "train/torch_math.h"
#include "util/status.h"

namespace subq::train {

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
  // Moves tensors that are not parameters (RoPE frequencies) to `d`; Student::To moves the parameters.
  virtual void MoveBuffers(const torch::Device& d) {}
  virtual int num_heads() const = 0;
  int chunk = 64;  // training chunk length of the scan
};

struct OryxModes;  // student_mixers.h

struct StudentLayer {
  torch::Tensor in_norm, mlp_norm, gate, up, down;
  std::unique_ptr<StudentMixer> mixer;
};

// The engine's ModelConfig of the student of `s` distilled from a teacher of config `t`: family
// (discrete_mamba2 -> llamba, else the kind), the teacher's dims / vocab / norms / token ids, the mixer
// sub-config from the recipe, layers (attention where s.attention_layers keeps them; the teacher's attention
// config then), and the fields the family's config.json does not carry as the engine's parser sets them.
ModelConfig StudentConfig(const ModelConfig& t, const StudentRecipe& s);

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
  // Oryx layers keep their (trained) mixer under the attention prefix, as the engine reads them.
  bool IsMixerParam(const std::string& name) const {
    return name.find("." + keys_.recurrent) != std::string::npos ||
           (oryx_modes && name.find("." + keys_.attention) != std::string::npos);
  }
  // A weight of a kept teacher attention layer (hybrids).
  bool IsKeptAttentionParam(const std::string& name) const;
  bool IsMlpParam(const std::string& name) const {
    return name.find("." + keys_.mlp) != std::string::npos || name.find(keys_.mlp_norm) != std::string::npos;
  }
  void To(const torch::Device& d);

  StudentRecipe spec;
  bool checkpoint_blocks = false;  // Logits recomputes each block in backward (train/compute.h)
  // The engine's config of this student (StudentConfig): what export writes as config.json (io/hf_config.h
  // WriteHfConfig) and what the engine parses back; tensor names come from its family's keys and the
  // mixer table (model/schema.h).
  ModelConfig cfg;
  torch::Tensor embed, final_norm, lm_head;
  std::vector<StudentLayer> layers;
  // kind oryx: the mode mask its layers share (student_mixers.h; set `fixed` to pick modes); else null.
  std::shared_ptr<OryxModes> oryx_modes;

 private:
  FamilyKeys keys_;  // WriteKeysForFamily(cfg)
};

}  // namespace subq::train
