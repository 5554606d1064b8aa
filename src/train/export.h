// What the trainer writes besides checkpoints: the exported student in the engine's format, teacher
// samples for self-distillation, and the PNG plots (held-out perplexity: train/heldout.h).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "train/student.h"
#include "train/teacher.h"
#include "util/status.h"

namespace subq::train {

// config.json + model.safetensors (f32, export key names) into out_dir, each written atomically.
Status ExportStudent(const Student& s, const std::string& out_dir);
// Copies the tokenizer the teacher was read with (the recipe's override, the HF folder's tokenizer files,
// or the llama2.c tokenizer .bin beside the model plus its SentencePiece .model when present).
Status CopyTokenizer(const std::string& teacher_path, const std::string& tokenizer_override, int vocab_size,
                     const std::string& out_dir);

// `n` sequences of seq_len tokens sampled from the teacher (BOS first), temperature `temp`, seeded.
std::vector<int> SampleFromTeacher(const Teacher& t, int64_t n, int seq_len, double temp, uint64_t seed,
                                   const torch::Device& dev);

// Teacher attention vs student mixing matrices on `ids` (first heads of every distilled layer), side by side.
Status WriteMixingPng(const Teacher& t, const Student& s, const std::vector<int>& ids, const torch::Device& dev,
                      const std::string& path);

}  // namespace subq::train
