// Random whole models of every family for engine tests: a ModelConfig per family and a TensorStore
// filled by asking the loader what it needs (each missing tensor's error names it and its shape).
#pragma once
#include <cmath>
#include <memory>
#include <random>
#include <regex>
#include <string>

#include "io/random_tensors.h"
#include "model/model.h"

namespace subq::testing {

// Names of the families (and hybrids) RandomModelConfig knows.
inline const char* const kModelKinds[] = {"llama", "mamba2", "llamba", "llamba_head_hybrid", "mamba3",
                                          "mamba3_mimo", "gated_deltanet", "mamba2_attention_hybrid"};

inline ModelConfig RandomModelConfig(const std::string& kind) {
  ModelConfig c;
  c.vocab_size = 97, c.dim = 32, c.n_layers = 3, c.max_seq_len = 128, c.tie_embeddings = false;
  c.attn = AttentionConfig{4, 2, 8, 10000.0f, false, {}};
  MixerKind mixer = MixerKind::kAttention;
  if (kind == "llama") {
    c.family = "llama", c.hidden_dim = 48;
  } else if (kind == "mamba2" || kind == "mamba2_attention_hybrid") {
    c.family = "mamba2", mixer = MixerKind::kMamba2;
    c.mamba2 = Mamba2Config{4, 16, 8, 2, 4, 4, 1e-5f, true};
  } else if (kind == "llamba" || kind == "llamba_head_hybrid") {
    c.family = "llamba", c.hidden_dim = 48, mixer = MixerKind::kDiscreteMamba2;
    c.dm2 = DiscreteMamba2Config{8, 2, 4, 8, 4, 4, true};
  } else if (kind == "mamba3" || kind == "mamba3_mimo") {
    c.family = "mamba3", mixer = MixerKind::kMamba3;
    c.mamba3.n_heads = 4, c.mamba3.head_dim = 8, c.mamba3.state_size = 8, c.mamba3.chunk_size = 4;
    if (kind == "mamba3_mimo") c.mamba3.mimo_rank = 2, c.mamba3.n_groups = 2, c.mamba3.output_norm = true;
  } else if (kind == "gated_deltanet") {
    c.family = "gated_deltanet", c.hidden_dim = 48, mixer = MixerKind::kGatedDeltaNet;
    c.gdn = GatedDeltaNetConfig{2, 4, 8, 8, 4, 4, 1e-5f};
  }
  c.layers.assign(c.n_layers, LayerConfig{mixer, {}});
  if (kind == "mamba2_attention_hybrid") c.layers[1].mixer = MixerKind::kAttention;
  if (kind == "llamba_head_hybrid") c.layers[1].attention_heads = {2, 0};
  return c;
}

// Scale of random values by tensor name (decays that neither vanish nor explode).
inline void AddPlausibleTensor(TensorStore& st, const std::string& name, const std::vector<int64_t>& shape,
                               std::mt19937& rng) {
  auto ends = [&](const char* s) { return name.size() >= std::strlen(s) && name.rfind(s) == name.size() - std::strlen(s); };
  if (ends("A_log")) {
    (void)AddRandomTensor(st, name, shape, 0.3f, rng, 0.5f);
  } else if (ends("dt_bias")) {
    (void)AddRandomTensor(st, name, shape, 0.3f, rng, -2.0f);
  } else if (name.find("norm") != std::string::npos || ends(".D") || ends("D")) {
    (void)AddRandomTensor(st, name, shape, 0.1f, rng, 1.0f);
  } else if (shape.size() == 2) {
    (void)AddRandomTensor(st, name, shape, 1.0f / std::sqrt(static_cast<float>(shape[1])), rng);
  } else {
    (void)AddRandomTensor(st, name, shape, 0.3f, rng);
  }
}

// A checkpoint of `cfg` holding exactly the random tensors the loader asks for (each missing tensor's
// error names it and its shape); other loader errors are returned.
inline Result<Checkpoint> RandomCheckpoint(const ModelConfig& cfg, unsigned seed) {
  Checkpoint ck;
  ck.path = "random " + cfg.family;
  ck.format = "hf";
  ck.config = cfg;
  ck.tensors.source = ck.path;
  std::mt19937 rng(seed);
  const std::regex missing("missing tensor '([^']+)' \\(expected shape \\[([0-9, ]*)\\]\\)");
  for (int attempt = 0; attempt < 1000; ++attempt) {
    auto m = Model::FromCheckpoint(ck);
    if (m.ok()) return ck;
    std::smatch g;
    const std::string msg = m.status().message();
    if (!std::regex_search(msg, g, missing)) return m.status();
    std::vector<int64_t> shape;
    std::string dims = g[2];
    for (size_t p = 0; p < dims.size();) {
      size_t q = dims.find(',', p);
      shape.push_back(std::stoll(dims.substr(p, q - p)));
      if (q == std::string::npos) break;
      p = q + 1;
    }
    AddPlausibleTensor(ck.tensors, g[1], shape, rng);
  }
  return Errorf("random model: too many tensors");
}

// A model of `cfg` with random weights (RandomCheckpoint).
inline Result<std::unique_ptr<Model>> RandomModel(const ModelConfig& cfg, unsigned seed) {
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, RandomCheckpoint(cfg, seed));
  return Model::FromCheckpoint(ck);
}

}  // namespace subq::testing
