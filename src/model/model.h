// Model: embeddings, a stack of residual blocks (mixer + optional SwiGLU MLP), final norm, LM head.
// Families differ only in key names and in whether blocks carry an MLP (model/families.cc); the
// mixer of every layer comes from its kind in the config.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/layer.h"
#include "model/sequence_state.h"

namespace subq {

// Tensor names of a family. Layer-relative names are prefixed with LayerPrefix(i).
struct FamilyKeys {
  std::string embed, final_norm, lm_head;
  std::string layer_prefix;  // printf-style with one %d, e.g. "model.layers.%d."
  std::string in_norm;       // e.g. "input_layernorm.weight"
  std::string mlp_norm;      // e.g. "post_attention_layernorm.weight" ("" when blocks have no MLP)
  std::string mlp;           // e.g. "mlp." (gate_proj/up_proj/down_proj under it)
  std::string attention;     // mixer prefix of attention layers, e.g. "self_attn."
  std::string recurrent;     // mixer prefix of recurrent layers, e.g. "mixer."
  std::string LayerPrefix(int i) const;
};
// Key names of `cfg.family`; `store` resolves variants (mamba_ssm "embedding" vs HF "embeddings").
Result<FamilyKeys> KeysForFamily(const ModelConfig& cfg, const TensorStore& store);

struct SwiGluMlp {
  Tensor gate, up, down;  // [hidden, dim], [hidden, dim], [dim, hidden]
};

struct Block {
  Tensor in_norm;   // [dim]
  std::unique_ptr<Mixer> mixer;
  Tensor mlp_norm;  // [dim], empty when no MLP
  SwiGluMlp mlp;
};

class Model {
 public:
  static Result<std::unique_ptr<Model>> FromCheckpoint(const Checkpoint& ckpt);

  const ModelConfig& config() const { return cfg_; }
  SequenceState NewSequence() const;

  // Runs `tokens` at the sequence's current position and advances it. Writes the logits of the last
  // token to `logits` [vocab], or of every token [L, vocab] when all_logits.
  Status Forward(const int* tokens, int L, SequenceState& seq, float* logits, bool all_logits = false);
  // Residual stream entering layer `layer` for `tokens` from a fresh sequence: [L, dim].
  Result<Tensor> LayerInput(const std::vector<int>& tokens, int layer);
  // Mixing matrices [H, L, L] of layer `layer` on `tokens` (from its normalised layer input).
  Result<Tensor> MixingMatrix(const std::vector<int>& tokens, int layer);

  const std::vector<Block>& blocks() const { return blocks_; }

 private:
  void RunBlock(int l, float* x, int L, int pos, SequenceState& seq);

  ModelConfig cfg_;
  Tensor embed_;    // [vocab, dim]
  Tensor final_norm_;
  Tensor lm_head_;  // [vocab, dim]; empty when tied to embed_
  std::vector<Block> blocks_;
  // scratch, grown on demand and reused (no allocation in the decode loop once warm)
  std::vector<float> x_, u_, mix_, h1_, h2_;
};

}  // namespace subq
