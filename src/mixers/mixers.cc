#include "mixers/mixers.h"

namespace subq {

Result<std::unique_ptr<Mixer>> MakeMixer(const ModelConfig& cfg, int layer, const TensorStore& store,
                                         const std::string& prefix) {
  if (layer < 0 || layer >= static_cast<int>(cfg.layers.size()))
    return Errorf("layer {} out of range (model has {} layers)", layer, cfg.layers.size());
  switch (cfg.layers[layer].mixer) {
    case MixerKind::kAttention: return MakeAttention(cfg, layer, store, prefix);
    case MixerKind::kMamba2: return MakeMamba2(cfg, layer, store, prefix);
    case MixerKind::kDiscreteMamba2: return MakeDiscreteMamba2(cfg, layer, store, prefix);
    case MixerKind::kMamba3: return MakeMamba3(cfg, layer, store, prefix);
    case MixerKind::kGatedDeltaNet: return MakeGatedDeltaNet(cfg, layer, store, prefix);
    case MixerKind::kOryx: return MakeOryx(cfg, layer, store, prefix);
  }
  return Errorf("layer {}: unknown mixer kind", layer);
}

}  // namespace subq
