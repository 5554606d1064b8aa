// The Llama teacher in libtorch, with access to each layer's input residual stream, attention
// probabilities and block output (what the MOHAWK stages compare against).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "train/torch_math.h"
#include "util/status.h"

namespace subq::train {

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

}  // namespace subq::train
