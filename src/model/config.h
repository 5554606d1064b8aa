// ModelConfig: a plain struct describing any model the engine runs. The per-layer mixer kind and,
// for head-level hybrids, the kept attention heads are data, not code paths.
#pragma once
#include <string>
#include <vector>

namespace subq {

enum class MixerKind { kAttention, kMamba2, kDiscreteMamba2, kMamba3, kGatedDeltaNet, kOryx };
const char* MixerKindName(MixerKind k);
bool ParseMixerKind(const std::string& s, MixerKind* out);

struct RopeScaling {
  std::string type;  // "" (none) or "llama3"
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

struct AttentionConfig {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float rope_theta = 10000.0f;
  bool rope_interleaved = false;  // true: pairs (2i, 2i+1) as llama2.c/GGUF; false: rotate-half as HF
  RopeScaling rope_scaling;
};

// SPEC section 2.
struct Mamba2Config {
  int n_heads = 0, head_dim = 0, state_size = 0, n_groups = 1, conv_kernel = 4, chunk_size = 256;
  float norm_eps = 1e-5f;
  bool norm_grouped = true;  // mamba_ssm: RMSNorm per group; HF transformers: over all of d_inner
  int d_inner() const { return n_heads * head_dim; }
};

// SPEC section 3.
struct DiscreteMamba2Config {
  int d_state = 0, n_qk_heads = 0, n_v_heads = 0, head_dim = 0, conv_kernel = 4, chunk_size = 128;
  bool conv_bias = true;
  int d_inner() const { return n_v_heads * head_dim; }
};

// SPEC section 4.
struct Mamba3Config {
  int n_heads = 0, head_dim = 0, state_size = 0, n_groups = 1, mimo_rank = 1, chunk_size = 64;
  float rope_fraction = 0.5f;
  bool output_norm = false;
  int d_inner() const { return n_heads * head_dim; }
  int n_angles() const { return static_cast<int>(state_size * rope_fraction / 2); }
};

// SPEC section 5.
struct GatedDeltaNetConfig {
  int n_qk_heads = 0, n_v_heads = 0, head_k_dim = 0, head_v_dim = 0, conv_kernel = 4, chunk_size = 64;
  float norm_eps = 1e-5f;
};

// Oryx multi-mixer layers (mixers/oryx.h): the attention's q/k/v/o plus small recurrent extras;
// recurrence "ssd" (scalar-decay, Mamba-2 style) or "gdn" (gated delta rule). default_mode is used at
// positions a sequence's mode schedule does not cover ("attention" or "recurrent").
struct OryxConfig {
  std::string recurrence = "ssd";
  std::string default_mode = "recurrent";
  int chunk_size = 64;
};

struct LayerConfig {
  MixerKind mixer = MixerKind::kAttention;
  // Head-level hybrid: attention heads kept in this (otherwise recurrent) layer, run in parallel
  // with the recurrent heads (SPEC section 6). Empty for plain layers.
  std::vector<int> attention_heads;
};

struct ModelConfig {
  std::string family = "llama";  // llama | mamba2 | llamba | mamba3 | gated_deltanet
  int vocab_size = 0;
  int dim = 0;
  int hidden_dim = 0;  // SwiGLU MLP width; 0 = no MLP in the block (Mamba-2 models)
  int n_layers = 0;
  int max_seq_len = 2048;
  float norm_eps = 1e-5f;
  bool tie_embeddings = true;
  int bos_id = 1;
  int eos_id = 2;
  // Keep the recurrent state of Mamba-2 / Discrete Mamba-2 layers in bf16 (half the bytes; f32 compute).
  bool bf16_state = false;

  AttentionConfig attn;
  Mamba2Config mamba2;
  DiscreteMamba2Config dm2;
  Mamba3Config mamba3;
  GatedDeltaNetConfig gdn;
  OryxConfig oryx;
  std::vector<LayerConfig> layers;  // n_layers entries

  std::string ToString() const;  // human-readable, for `subq inspect` and logs
};

}  // namespace subq
