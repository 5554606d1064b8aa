// Workspace: every activation and scratch buffer of a forward pass, owned by the caller and sized once
// from the model and the most rows one call may carry (all sequences of a batch together). A thread
// that runs sequences needs its own Workspace; the Model (weights) is shared and const. Nothing in a
// forward pass allocates.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/layer.h"
#include "util/status.h"
#include "util/threads.h"

namespace subq {

class Model;

class Workspace {
 public:
  // Room for up to max_tokens stacked rows per Model::Forward call (longer prompts are fed in pieces).
  Workspace(const Model& model, int max_tokens, Threads threads = Threads::Default());
  int max_tokens() const { return max_tokens_; }
  const Threads& threads() const { return threads_; }
  size_t Bytes() const;

  // Head ablation: every Forward with this workspace zeroes the output of the heads of attention layer
  // `layer` whose flag in `zeroed` is non-zero (one flag per query head; the weights stay as they are).
  // An empty `zeroed` clears the layer's mask. Errors: a layer out of range, not an attention layer, or a
  // flag count other than its number of heads.
  Status SetZeroedHeads(int layer, std::vector<uint8_t> zeroed);
  void ClearZeroedHeads();
  // The layer's flags, or null when none of its heads is zeroed.
  const uint8_t* ZeroedHeads(int layer) const;

 private:
  friend class Model;
  int max_tokens_;
  Threads threads_;
  const Model* owner_;
  std::vector<float> x_, u_, mix_, h1_, h2_;  // [T, dim] x3, [T, hidden] x2
  std::vector<SeqSlice> slices_;             // one per sequence of a call
  std::vector<float> scratch_;               // mixers' arena (max over layers)
  std::vector<std::vector<uint8_t>> zeroed_heads_;  // per layer: empty, or one flag per head
};

}  // namespace subq
