// `subq train`: plain next-token training (cross-entropy) of a Llama, from scratch (shape in the recipe,
// vocab from a tokenizer) or fine-tuning a checkpoint the trainer loads, on a weighted mixture of text
// files and probe JSONL (`subq data probe`). AdamW + warmup-stable-decay, atomic checkpoints + --resume,
// progress lines, metrics.jsonl + loss PNG, export as a Hugging Face Llama folder (the engine and
// transformers read it). The recipe structs and reader have no torch; RunTrain is in train_lm.cc.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/recipe.h"
#include "util/status.h"

namespace subq::train {

// The Llama to train: `from` (fine-tune) or the shape below (from scratch; vocab = the tokenizer's).
struct LmModelRecipe {
  std::string from;       // checkpoint to fine-tune (HF folder, llama2.c .bin, .gguf); "" = from scratch
  std::string tokenizer;  // from scratch: required; fine-tune: optional override
  int dim = 64, hidden_dim = 0, n_layers = 4, n_heads = 4, n_kv_heads = 0;  // hidden_dim 0: ~8/3 dim, n_kv 0: n_heads
  double rope_theta = 10000.0, norm_eps = 1e-5, init_std = 0.02;
  int max_seq_len = 1024;
  bool tie_embeddings = true;
};

// One source of the mixture. Exactly one of text / probe is set.
struct LmSource {
  std::string text;   // plain-text corpus: documents split on `separator`, each prefixed with BOS
  std::string probe;  // JSONL from `subq data probe`: the "text" of every record is one example
  std::string separator = "<|endoftext|>";
  double weight = 1.0;  // share of the training sequences drawn from this source (normalised)
  // Probe sources: which tokens carry the loss. "all" = every token (plain next-token training);
  // "answers" = only the answer tokens (the records' answer_spans), as supervised fine-tuning and the
  // zoology/mohawk MQAR setups do: the random dictionary tokens are unpredictable noise that would
  // otherwise outweigh the few tokens that need retrieval. Every sequence weighs the same in the mean.
  std::string loss = "all";
};

struct LmRecipe {
  std::string path;
  uint64_t seed = 1234;
  int seq_len = 256;
  int micro_batch = 16;
  int checkpoint_every = 100;
  LmModelRecipe model;
  std::vector<LmSource> sources;
  double held_out_fraction = 0.05;  // tail of every text source's documents, for held-out perplexity
  int64_t eval_tokens = 32768;
  StageRecipe train;  // tokens, lr, batch_tokens (other fields unused)
  OptimRecipe optim;
  std::string yaml;   // the recipe after overrides (part of the run fingerprint)
};

// Reads, applies overrides ("dotted.key=value") and validates (unknown keys, ranges, missing files).
// Paths may use ${SUBQ_DATA} and are otherwise relative to the recipe's folder.
Result<LmRecipe> LoadLmRecipe(const std::string& path, const std::vector<std::string>& overrides = {});
Result<LmRecipe> ParseLmRecipe(const std::string& yaml, const std::string& origin, const std::string& base_dir,
                               const std::vector<std::string>& overrides = {});

struct TrainOptions {
  std::string recipe, out_dir, device = "cpu";
  bool resume = false, resume_anyway = false;
  int keep_checkpoints = 2, threads = 0;
  std::vector<std::string> overrides;
  int64_t stop_after_steps = -1;  // testing: exit (as if killed) after this many optimiser steps
};

struct TrainResult {
  double held_out_ppl = 0;
  int64_t eval_tokens = 0, steps = 0, params = 0;
  int window = 0;  // perplexity window (stride window / 2)
  double seconds = 0, train_seconds = 0;
};

Result<TrainResult> RunTrain(const TrainOptions& o);

}  // namespace subq::train
