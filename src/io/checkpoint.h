// Readers of whole checkpoints. Each returns the model config and a TensorStore whose tensor names and
// layouts are those of the Hugging Face family (for Llama: model.embed_tokens.weight,
// model.layers.{i}.self_attn.q_proj.weight [out, in], ...), so model code binds every format the same way.
// Every reader validates header, sizes, offsets, dtypes and shapes before touching tensor data.
#pragma once
#include <string>
#include <vector>

#include "io/tensor_store.h"
#include "model/config.h"
#include "util/status.h"

namespace subq {

// Tokenizer vocabulary carried inside a checkpoint (GGUF); empty otherwise.
struct EmbeddedVocab {
  std::string model;  // e.g. "llama"
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int> token_types;
  int bos_id = -1, eos_id = -1, unk_id = -1;
  bool empty() const { return tokens.empty(); }
};

struct Checkpoint {
  std::string path;
  std::string format;  // "llama2c" | "gguf" | "hf"
  ModelConfig config;
  TensorStore tensors;
  EmbeddedVocab vocab;                 // GGUF only
  std::vector<std::string> metadata;   // "key = value" lines for `subq inspect` (GGUF/HF extras)
};

// llama2.c .bin: header of 7 int32, then f32 weights (SPEC section 1). Interleaved RoPE.
Result<Checkpoint> ReadLlama2c(const std::string& path);
// GGUF v2/v3, archs llama (interleaved RoPE: q/k not permuted) and mamba2 (as convert_hf_to_gguf.py writes
// it); tensors F32/F16/BF16 in place, Q8_0/Q4_0 repacked into the quantized layout (io/gguf_tensors.h).
Result<Checkpoint> ReadGguf(const std::string& path);
// HF folder: config.json + model.safetensors (or sharded via model.safetensors.index.json); quantized
// matrices as in io/quantized.h.
Result<Checkpoint> ReadHfFolder(const std::string& dir);
// Parses a safetensors file into `store` (memory-mapped).
Status ReadSafetensors(const std::string& path, TensorStore* store);
// Reads a sharded checkpoint: the index JSON's `weight_map` {tensor: file} names files beside it; every
// listed file is read and every mapped tensor must be found in the file it is mapped to.
Status ReadShardedSafetensors(const std::string& index_path, TensorStore* store);
// Checks that `store` holds every tensor of a Llama model described by `cfg`, with the HF shapes.
Status ValidateLlamaTensors(const ModelConfig& cfg, const TensorStore& store, const std::string& path);
// Picks the reader from the path: a directory -> HF, *.gguf -> GGUF, otherwise llama2.c.
Result<Checkpoint> ReadCheckpoint(const std::string& path);

}  // namespace subq
