// Tensor names of each model family. A family is only a naming scheme plus whether blocks carry an
// MLP; the mixer of each layer comes from the config.
#include <cstdio>

#include "model/model.h"

namespace subq {

std::string FamilyKeys::LayerPrefix(int i) const {
  char buf[128];
  std::snprintf(buf, sizeof(buf), layer_prefix.c_str(), i);
  return buf;
}

Result<FamilyKeys> KeysForFamily(const ModelConfig& cfg, const TensorStore& store) {
  return KeysForFamily(cfg, [&store](const std::string& name) { return store.Has(name); });
}

Result<FamilyKeys> KeysForFamily(const ModelConfig& cfg, const std::function<bool(const std::string&)>& has) {
  FamilyKeys k;
  const bool has_mlp = cfg.hidden_dim > 0;
  if (cfg.family == "llama") {
    // HF LlamaForCausalLM (llama2.c and GGUF readers rename to these keys).
    k = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.layers.%d.",
         "input_layernorm.weight", "post_attention_layernorm.weight", "mlp.", "self_attn.", "mixer."};
  } else if (cfg.family == "mamba2" || cfg.family == "mamba3") {
    // HF Mamba2ForCausalLM says "embeddings", mamba_ssm MambaLMHeadModel says "embedding".
    const std::string embed =
        has("backbone.embeddings.weight") ? "backbone.embeddings.weight" : "backbone.embedding.weight";
    k = {embed, "backbone.norm_f.weight", "lm_head.weight", "backbone.layers.%d.", "norm.weight",
         has_mlp ? "norm2.weight" : "", has_mlp ? "mlp." : "", "mixer.", "mixer."};
  } else if (cfg.family == "llamba") {
    // cartesia-ai/edge Llamba: Llama-style sequential blocks around a Discrete Mamba-2 mixer.
    k = {"backbone.embedding.weight", "backbone.final_layernorm.weight", "lm_head.weight", "backbone.layers.%d.",
         "input_layernorm.weight", "post_attention_layernorm.weight", "mlp.", "mixer.", "mixer."};
  } else if (cfg.family == "gated_deltanet") {
    // fla GatedDeltaNetForCausalLM.
    k = {"model.embeddings.weight", "model.norm.weight", "lm_head.weight", "model.layers.%d.", "attn_norm.weight",
         "mlp_norm.weight", "mlp.", "attn.", "attn."};
  } else {
    return Errorf("unknown model family '{}'", cfg.family);
  }
  if (!has_mlp) k.mlp_norm.clear(), k.mlp.clear();
  return k;
}

}  // namespace subq
