// Model: embeddings, a stack of residual blocks (mixer + optional SwiGLU MLP), final norm, LM head.
// Families differ only in key names and in whether blocks carry an MLP (model/families.cc); the
// mixer of every layer comes from its kind in the config.
//
// A Model is const after loading and shared: weights are typed views into the mapped checkpoint.
// Activations live in a caller-owned Workspace; each sequence's state in its own SequenceState.
// Forward runs a ragged batch: B sequences, each with its own state, position and number of new
// tokens; every projection is one product over all stacked rows.
#pragma once
#include <climits>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/layer.h"
#include "model/sequence_state.h"
#include "model/workspace.h"
#include "ops/weight.h"

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
// Key names of `cfg.family`; `has` (or `store`) resolves variants (mamba_ssm "embedding" vs HF "embeddings").
Result<FamilyKeys> KeysForFamily(const ModelConfig& cfg, const std::function<bool(const std::string&)>& has);
Result<FamilyKeys> KeysForFamily(const ModelConfig& cfg, const TensorStore& store);

struct SwiGluMlp {
  ops::Weight gate, up, down;  // [hidden, dim], [hidden, dim], [dim, hidden]
};

struct Block {
  Tensor in_norm;  // [dim]
  std::unique_ptr<Mixer> mixer;
  Tensor mlp_norm;  // [dim], empty when no MLP
  SwiGluMlp mlp;
};

// One sequence of a batched Forward call: n new tokens fed at the state's position. logits receives
// the last token's logits [vocab], or every token's [n, vocab] when all_logits.
struct SeqInput {
  const int* tokens = nullptr;
  int n = 0;
  SequenceState* state = nullptr;
  float* logits = nullptr;
  bool all_logits = false;
};

class Model {
 public:
  static Result<std::unique_ptr<Model>> FromCheckpoint(const Checkpoint& ckpt);

  const ModelConfig& config() const { return cfg_; }
  // Tokens a sequence may hold: max_seq_len when any layer attends (KV caches are preallocated to
  // it), unlimited (INT_MAX) for purely recurrent models, whose state is constant.
  int context_limit() const { return has_attention_ ? cfg_.max_seq_len : INT_MAX; }
  bool has_attention() const { return has_attention_; }
  // A fresh sequence; KV caches hold room for max_context tokens (0: context_limit(), capped at
  // max_seq_len for allocation). Asking for more than context_limit() is an error.
  Result<SequenceState> NewSequence(int max_context = 0) const;
  // Floats the mixers' arena needs for max_tokens rows (Workspace sizing).
  size_t ScratchFloats(int max_tokens, int n_threads) const;

  // Ragged batch: sum of n over `batch` must be <= ws.max_tokens(); states distinct and of this model.
  Status Forward(std::span<const SeqInput> batch, Workspace& ws) const;
  // One sequence, any number of tokens (fed in pieces of ws.max_tokens()).
  Status Forward(const int* tokens, int L, SequenceState& seq, Workspace& ws, float* logits,
                 bool all_logits = false) const;

  // Residual stream entering layer `layer` for `tokens` from a fresh sequence: [L, dim].
  Result<Tensor> LayerInput(const std::vector<int>& tokens, int layer) const;
  // Mixing matrices [H, L, L] of layer `layer` on `tokens` (from its normalised layer input).
  Result<Tensor> MixingMatrix(const std::vector<int>& tokens, int layer) const;

  const std::vector<Block>& blocks() const { return blocks_; }
  // Bytes of weights one decode step reads (all matrices and vectors once).
  size_t WeightBytes() const;

 private:
  Status CheckBatch(std::span<const SeqInput> batch, const Workspace& ws, int* total) const;
  void RunBlock(int l, float* x, int T, std::span<const SeqSlice> slices, Workspace& ws) const;
  void Embed(const int* tokens, int n, float* x) const;

  ModelConfig cfg_;
  TensorStore store_;  // keeps the mapped files behind every weight view alive
  bool has_attention_ = false;
  ops::Weight embed_;    // [vocab, dim]
  Tensor final_norm_;    // [dim]
  ops::Weight lm_head_;  // [vocab, dim]; the embedding when tied
  std::vector<Block> blocks_;
};

}  // namespace subq
