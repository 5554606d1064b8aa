// Pieces of writing a Hugging Face folder, shared by `subq quantize` (io/quantize.h) and `subq convert`
// (io/hf_export.h): config.json of the Llama and Mamba-2 layouts, the RoPE row orders of q/k
// projections, tokenizer files carried over from the source checkpoint, atomic JSON writes.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "util/status.h"
#include "util/tensor.h"

namespace subq {

// transformers LlamaForCausalLM config.json of `c` (llama3 rope scaling included when set).
nlohmann::ordered_json LlamaConfigJson(const ModelConfig& c);
// transformers Mamba2ForCausalLM config.json of `c`; errors when d_inner is not a multiple of the width.
Result<nlohmann::ordered_json> Mamba2ConfigJson(const ModelConfig& c, bool conv_bias, const std::string& path);

// Meta/GGUF interleaved q/k rows -> HF rotate-half rows: HF row h*hd + t*hd/2 + i is Meta row h*hd + 2i + t.
void ToRotateHalf(Tensor* w, int64_t head_dim);
// The inverse: HF rotate-half rows -> interleaved rows (what llama.cpp's converter writes for arch llama).
void ToInterleaved(Tensor* w, int64_t head_dim);

// Copies the tokenizer files of checkpoint `ck` into `out`: an HF folder's tokenizer.json / tokenizer.model /
// tokenizer_config.json / special_tokens_map.json / generation_config.json, or for a llama2.c .bin the
// SentencePiece model beside it (tokenizer.model or tok{vocab}.model) as tokenizer.model. Files already in
// `out` are kept. Names copied are appended to `copied`.
Status CopyTokenizerFiles(const Checkpoint& ck, const std::string& out, std::vector<std::string>* copied);

// A folder holding only a SentencePiece tokenizer.model (from llama2.c) gets the tokenizer_config.json that
// transformers' AutoTokenizer needs (LlamaTokenizer, <s>/</s>/<unk>, BOS added); otherwise nothing is written.
Status WriteLlamaTokenizerConfig(const std::string& out_dir, int max_seq_len, std::vector<std::string>* written);

// Writes `j` (2-space indent, trailing newline) to "<path>.tmp" and renames it over `path`.
Status WriteJsonAtomic(const std::string& path, const nlohmann::ordered_json& j);

}  // namespace subq
