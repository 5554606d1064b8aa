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
}

size_t Workspace::Bytes() const {
  return (x_.size() + u_.size() + mix_.size() + h1_.size() + h2_.size() + scratch_.size()) * sizeof(float) +
         slices_.size() * sizeof(SeqSlice);
}

}  // namespace subq
