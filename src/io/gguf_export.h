// `subq convert --to gguf`: Llama and Mamba-2 checkpoints as GGUF v3 files that llama.cpp loads (archs
// `llama` and `mamba2`, the keys and tensor layouts of llama.cpp's convert_hf_to_gguf.py), and that
// io/gguf.cc reads back. Llama q/k rows go to the interleaved RoPE order llama.cpp's `llama` arch uses;
// Mamba-2 A_log becomes ssm_a = -exp(A_log) [H, 1], D [H, 1], conv1d [C, K], the gated norm [G, E/G].
// Matrices keep f32/f16/bf16 (quantized inputs are written as f32); 1-D tensors and the Mamba-2 extras are f32.
// The vocabulary (tokenizer.ggml.*, model "llama") comes from a GGUF source's own or from the SentencePiece
// tokenizer.model of the checkpoint (or `tokenizer`); other tokenizers are refused with an error.
// Refused too: Mamba-2 blocks with MLPs (students) and Discrete Mamba-2, Mamba-3, Gated DeltaNet, hybrids,
// which llama.cpp's archs cannot express; llama3 rope scaling (llama.cpp wants a rope_freqs tensor).
#pragma once
#include <string>

#include "util/status.h"

namespace subq {

struct GgufExportReport {
  std::string arch;          // "llama" | "mamba2"
  std::string vocab_source;  // where tokenizer.ggml.* came from
  int tensors = 0;
  uint64_t bytes = 0;        // tensor bytes
};

Result<GgufExportReport> ExportGguf(const std::string& model, const std::string& out_path,
                                    const std::string& tokenizer = "");

}  // namespace subq
