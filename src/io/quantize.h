// `subq quantize`: any checkpoint the engine reads (HF folder, GGUF, llama2.c .bin) -> an HF folder
// (config.json, model.safetensors, tokenizer files when present) with its matrices in a smaller type.
//  - q8 / q4: every 2-D `.weight` matrix (projections, embeddings, lm_head) whose cols % 32 == 0 is
//    quantized in the layout of io/quantized.h; other matrices stay f32 and are listed in the report.
//  - f16 / bf16: every 2-D `.weight` matrix is converted (round to nearest even).
// Everything else (norms, A_log, dt_bias, D, conv weights, biases) is written as f32. Llama q/k rows from
// GGUF and llama2.c (interleaved RoPE) are permuted into the HF (rotate-half) order, as HF folders keep them.
// Quantized inputs are dequantized first, so re-quantizing works (with the error of both steps).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace subq {

struct QuantizeReport {
  std::string source_format;            // "hf" | "gguf" | "llama2c"
  std::vector<std::string> converted;   // matrices written in the new type
  std::vector<std::string> kept_f32;    // matrices left in f32 (q8/q4: cols not a multiple of 32)
  std::vector<std::string> copied;      // tokenizer files copied into the folder
  uint64_t bytes_in = 0, bytes_out = 0;  // tensor bytes read, and model.safetensors bytes written
};

// `type`: "q8", "q4", "f16" or "bf16". `out_dir` is created if needed and must not be the input folder.
Result<QuantizeReport> QuantizeCheckpoint(const std::string& model, const std::string& type,
                                          const std::string& out_dir);

}  // namespace subq
