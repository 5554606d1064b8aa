// One schema for both stacks (engine and trainer): the tensors of every mixer kind (name relative to the
// mixer prefix, and shape from the ModelConfig), the key names a writer uses for a family, and a
// field-by-field view of ModelConfig (VisitFields) that round-trip tests compare with.
// Depends on model/config.h and model/model.h (FamilyKeys) only; the engine's mixer loaders and the
// trainer's StudentMixer::Params() both read MixerTensors, so a name or shape is spelled here once.
#pragma once
#include <cstdint>
#include <map>
#include <variant>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/model.h"

namespace subq {

struct TensorSpec {
  std::string name;            // relative to the layer's mixer prefix, e.g. "in_proj.weight"
  std::vector<int64_t> shape;  // e.g. {2*d_inner + 2*G*N + H, dim}
  bool optional = false;       // the engine accepts its absence (e.g. Mamba-2 conv1d.bias when use_conv_bias false)
};

// Tensors of layer `layer`'s mixer (its kind in cfg.layers, kept attention heads included), in the
// order the writers list them. Errors for a layer index outside cfg.layers.
Result<std::vector<TensorSpec>> MixerTensors(const ModelConfig& cfg, int layer);
// Tensors of one mixer kind on `cfg` (no kept heads).
std::vector<TensorSpec> MixerKindTensors(const ModelConfig& cfg, MixerKind kind);
// Names only, in table order (what a writer of `kind` emits; output-norm / MIMO tensors as cfg says).
std::vector<std::string> MixerTensorNames(const ModelConfig& cfg, MixerKind kind);

// A loader's destination for a table entry: a matrix view (LoadWeight, quantized kept) or an f32 tensor.
using TableSlot = std::variant<Tensor*, ops::Weight*>;
// Loads every entry of `specs` under `prefix` into the slot of the same name (shapes from the table;
// optional entries that are absent are skipped). Errors name the tensor; a table entry without a slot is
// an internal error.
Status LoadTable(const TensorStore& store, const std::string& prefix, const std::vector<TensorSpec>& specs,
                 const std::map<std::string, TableSlot>& slots);

// The key names a writer of `cfg.family` uses (KeysForFamily with the canonical variant: HF
// "backbone.embeddings.weight" for mamba2, mamba_ssm "backbone.embedding.weight" for mamba3). Also the
// teacher's table for the trainer (family llama).
Result<FamilyKeys> WriteKeysForFamily(const ModelConfig& cfg);
// The MLP tensor names relative to the layer prefix: keys.mlp + {gate,up,down}_proj.weight.
std::vector<std::string> MlpTensorNames(const FamilyKeys& keys);

// Every field of ModelConfig, by name, for one visitor v(name, const field&). Fields of the same struct
// in declaration order; layers as "layers[i].mixer" / "layers[i].attention_heads". A field added to
// ModelConfig must be added here (schema_test checks the count against the struct sizes it knows).
template <class V>
void VisitFields(const ModelConfig& c, V&& v) {
  v("family", c.family), v("vocab_size", c.vocab_size), v("dim", c.dim), v("hidden_dim", c.hidden_dim);
  v("n_layers", c.n_layers), v("max_seq_len", c.max_seq_len), v("norm_eps", c.norm_eps);
  v("tie_embeddings", c.tie_embeddings), v("bos_id", c.bos_id), v("eos_id", c.eos_id), v("bf16_state", c.bf16_state);
  const AttentionConfig& a = c.attn;
  v("attn.n_heads", a.n_heads), v("attn.n_kv_heads", a.n_kv_heads), v("attn.head_dim", a.head_dim);
  v("attn.rope_theta", a.rope_theta), v("attn.rope_interleaved", a.rope_interleaved);
  v("attn.rope_scaling.type", a.rope_scaling.type), v("attn.rope_scaling.factor", a.rope_scaling.factor);
  v("attn.rope_scaling.low_freq_factor", a.rope_scaling.low_freq_factor);
  v("attn.rope_scaling.high_freq_factor", a.rope_scaling.high_freq_factor);
  v("attn.rope_scaling.original_max_position_embeddings", a.rope_scaling.original_max_position_embeddings);
  const Mamba2Config& m = c.mamba2;
  v("mamba2.n_heads", m.n_heads), v("mamba2.head_dim", m.head_dim), v("mamba2.state_size", m.state_size);
  v("mamba2.n_groups", m.n_groups), v("mamba2.conv_kernel", m.conv_kernel), v("mamba2.chunk_size", m.chunk_size);
  v("mamba2.norm_eps", m.norm_eps), v("mamba2.norm_grouped", m.norm_grouped);
  const DiscreteMamba2Config& d = c.dm2;
  v("dm2.d_state", d.d_state), v("dm2.n_qk_heads", d.n_qk_heads), v("dm2.n_v_heads", d.n_v_heads);
  v("dm2.head_dim", d.head_dim), v("dm2.conv_kernel", d.conv_kernel), v("dm2.chunk_size", d.chunk_size);
  v("dm2.conv_bias", d.conv_bias);
  const Mamba3Config& m3 = c.mamba3;
  v("mamba3.n_heads", m3.n_heads), v("mamba3.head_dim", m3.head_dim), v("mamba3.state_size", m3.state_size);
  v("mamba3.n_groups", m3.n_groups), v("mamba3.mimo_rank", m3.mimo_rank), v("mamba3.chunk_size", m3.chunk_size);
  v("mamba3.rope_fraction", m3.rope_fraction), v("mamba3.output_norm", m3.output_norm);
  const GatedDeltaNetConfig& g = c.gdn;
  v("gdn.n_qk_heads", g.n_qk_heads), v("gdn.n_v_heads", g.n_v_heads), v("gdn.head_k_dim", g.head_k_dim);
  v("gdn.head_v_dim", g.head_v_dim), v("gdn.conv_kernel", g.conv_kernel), v("gdn.chunk_size", g.chunk_size);
  v("gdn.norm_eps", g.norm_eps);
  v("oryx.recurrence", c.oryx.recurrence), v("oryx.default_mode", c.oryx.default_mode);
  v("oryx.chunk_size", c.oryx.chunk_size);
  v("layers.size", static_cast<int>(c.layers.size()));
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const std::string p = "layers[" + std::to_string(i) + "].";
    v(p + "mixer", c.layers[i].mixer), v(p + "attention_heads", c.layers[i].attention_heads);
  }
}
// Fields VisitFields visits before the per-layer ones ("layers.size" included; schema_test pins it).
inline constexpr int kModelConfigScalarFields = 55;

// "name = value" for every field VisitFields visits (floats printed exactly, %.9g).
std::vector<std::string> DescribeFields(const ModelConfig& c);
// The fields where a and b differ, as "name: a-value != b-value" (empty when equal field by field).
std::vector<std::string> ConfigDiff(const ModelConfig& a, const ModelConfig& b);

}  // namespace subq
