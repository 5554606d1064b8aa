#include "model/workspace.h"

#include <algorithm>

#include "model/model.h"

namespace subq {

Workspace::Workspace(const Model& model, int max_tokens, Threads threads)
    : max_tokens_(std::max(1, max_tokens)), threads_(threads), owner_(&model) {
  const ModelConfig& c = model.config();
  const size_t T = static_cast<size_t>(max_tokens_);
  x_.resize(T * c.dim);
  u_.resize(T * c.dim);
  mix_.resize(T * c.dim);
  h1_.resize(T * std::max(c.hidden_dim, 1));
  h2_.resize(T * std::max(c.hidden_dim, 1));
  slices_.resize(T);  // at most one sequence per row
  scratch_.resize(model.ScratchFloats(max_tokens_, threads_.n));
  zeroed_heads_.resize(c.n_layers);
}

Status Workspace::SetZeroedHeads(int layer, std::vector<uint8_t> zeroed) {
  const ModelConfig& c = owner_->config();
  if (layer < 0 || layer >= c.n_layers) return Errorf("head mask: layer {} out of range (model has {})", layer, c.n_layers);
  if (c.layers[layer].mixer != MixerKind::kAttention)
    return Errorf("head mask: layer {} is a {} layer; heads can be zeroed in attention layers only", layer,
                  MixerKindName(c.layers[layer].mixer));
  if (!zeroed.empty() && static_cast<int>(zeroed.size()) != c.attn.n_heads)
    return Errorf("head mask: {} flags for layer {}, which has {} heads", zeroed.size(), layer, c.attn.n_heads);
  const bool any = std::any_of(zeroed.begin(), zeroed.end(), [](uint8_t f) { return f != 0; });
  zeroed_heads_[layer] = any ? std::move(zeroed) : std::vector<uint8_t>();
  return Status::Ok();
}

void Workspace::ClearZeroedHeads() {
  for (auto& z : zeroed_heads_) z.clear();
}

const uint8_t* Workspace::ZeroedHeads(int layer) const {
  return zeroed_heads_[layer].empty() ? nullptr : zeroed_heads_[layer].data();
}

size_t Workspace::Bytes() const {
  return (x_.size() + u_.size() + mix_.size() + h1_.size() + h2_.size() + scratch_.size()) * sizeof(float) +
         slices_.size() * sizeof(SeqSlice);
}

}  // namespace subq
