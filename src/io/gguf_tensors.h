// The tensor side of the GGUF reader (io/gguf.cc): GGML tensor types, and the mapping of a GGUF tensor
// onto the engine's HF tensor of the same weight.
//  - Types: F32, F16, BF16 are mapped as they are; Q8_0 and Q4_0 (blocks of 32 along a row: an f16 scale,
//    then 32 int8 / 16 bytes of nibble pairs) are repacked into the planar layout of ops/weight.h (values
//    [rows, ...] then scales [rows, cols/32]) in buffers the TensorStore owns, as the I8/U8 + `_scale` pair
//    of io/quantized.h; never expanded to f32. Any other type is an error naming the tensor and the type.
//  - Names: arch llama (token_embd, blk.N.attn_q, ...) -> model.layers.N.self_attn.q_proj.weight, ...;
//    arch mamba2 as llama.cpp's convert_hf_to_gguf.py writes it (blk.N.ssm_in, ssm_conv1d, ssm_dt.bias,
//    ssm_a, ssm_d, ssm_norm, ssm_out) -> transformers' Mamba2ForCausalLM names, undoing the converter's
//    changes: ssm_a = -exp(A_log) [H, 1] -> A_log [H]; ssm_d [H, 1] -> D [H]; ssm_conv1d [C, K] ->
//    conv1d.weight [C, 1, K]; ssm_norm [G, E/G] -> norm.weight [E].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/tensor_store.h"
#include "util/status.h"

namespace subq::gguf {

enum GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kBF16 = 30 };

struct GgufTensor {
  std::string name;
  std::vector<int64_t> shape;  // row-major (GGUF dims reversed)
  uint32_t type = 0;
  uint64_t offset = 0, nbytes = 0;
};

// "Q4_K (12)" etc.
std::string GgmlTypeName(uint32_t type);
// Sets t->nbytes from t->type and t->shape; unsupported types and quantized rows that are not whole blocks
// are errors naming the tensor.
Status ComputeTensorBytes(const std::string& path, GgufTensor* t);
// Maps a GGUF tensor name of `arch` to the HF name ("" if unknown).
std::string HfName(const std::string& arch, const std::string& gguf_name);
// The inverse: the GGUF name of HF tensor `hf_name` in `arch` ("" if it has none), for the GGUF writer.
std::string GgufName(const std::string& arch, const std::string& hf_name);
// Adds tensor `t` (its bytes at `data`, inside the mapped file) to `store` under its HF name.
Status AddTensor(const std::string& arch, const GgufTensor& t, const uint8_t* data, const std::string& path,
                 TensorStore* store);

}  // namespace subq::gguf
