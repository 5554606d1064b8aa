// `subq convert --to hf`: any checkpoint the engine reads, written in a Hugging Face layout that another
// tool loads with the same math:
//  - Llama (teacher)                       -> transformers LlamaForCausalLM (q/k rows in rotate-half order)
//  - Mamba-2 without MLPs (HF / mamba_ssm) -> transformers Mamba2ForCausalLM
//  - Mamba-2 students (blocks with the teacher's SwiGLU MLP) and Mamba-2 + attention-layer hybrids
//                                          -> transformers GraniteMoeHybridForCausalLM (Mamba-2 and attention
//                                             layers, each followed by a dense SwiGLU "shared_mlp", no experts,
//                                             every multiplier 1): transformers' Mamba2ForCausalLM has no MLP
//  - Discrete Mamba-2 (Llamba)             -> cartesia's Llamba layout (cartesia-ai/edge LlambaForCausalLM)
// Mamba-3 and Gated DeltaNet students are already in their reference layouts (mamba_ssm, fla); transformers
// has none for them, so they are refused, as are Llamba hybrids (cartesia's Llamba has no attention).
// Tensors keep their dtype (f32/f16/bf16); quantized inputs and tensors that are transformed are written
// as f32. The tokenizer files of the source are copied.
#pragma once
#include <string>
#include <vector>

#include "util/status.h"

namespace subq {

struct HfExportReport {
  std::string layout;               // e.g. "LlamaForCausalLM"
  std::vector<std::string> copied;  // tokenizer files copied or written
  int tensors = 0;
  uint64_t bytes = 0;               // model.safetensors tensor bytes
};

// Writes out_dir/{config.json, model.safetensors, tokenizer files}; out_dir must differ from the model's folder.
Result<HfExportReport> ExportHf(const std::string& model, const std::string& out_dir);

}  // namespace subq
