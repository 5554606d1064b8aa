// Factories of the mixers, one per file in mixers/. Each validates the config and tensor shapes and
// returns a clear error (naming the tensor and the expected shape) on mismatch.
#pragma once
#include <memory>
#include <string>

#include "model/layer.h"

namespace subq {

Result<std::unique_ptr<Mixer>> MakeAttention(const ModelConfig& cfg, int layer, const TensorStore& store,
                                             const std::string& prefix);
Result<std::unique_ptr<Mixer>> MakeMamba2(const ModelConfig& cfg, int layer, const TensorStore& store,
                                          const std::string& prefix);
Result<std::unique_ptr<Mixer>> MakeDiscreteMamba2(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                  const std::string& prefix);
Result<std::unique_ptr<Mixer>> MakeMamba3(const ModelConfig& cfg, int layer, const TensorStore& store,
                                          const std::string& prefix);
Result<std::unique_ptr<Mixer>> MakeGatedDeltaNet(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                 const std::string& prefix);

Result<std::unique_ptr<Mixer>> MakeOryx(const ModelConfig& cfg, int layer, const TensorStore& store,
                                        const std::string& prefix);

}  // namespace subq
