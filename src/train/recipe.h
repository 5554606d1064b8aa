// A distillation recipe (recipes/*.yaml): teacher, student shape and init, data, and the three MOHAWK
// stages with their token budgets. Plain structs; LoadRecipe validates everything (unknown keys, bad
// values, missing files) so a run fails with one clear error before any training starts.
// No torch here: this header is cheap to include.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "util/status.h"

namespace subq::train {

// One MOHAWK stage. A stage with tokens == 0 is skipped.
struct StageRecipe {
  int64_t tokens = 0;        // token budget (sequences x seq_len)
  double lr = 1e-3;          // peak learning rate of the warmup-stable-decay schedule
  int64_t batch_tokens = 0;  // tokens per optimiser update (a multiple of seq_len)
  bool train_mlp = false;    // stage 2: train the MLPs (and their norms) beside the mixers
  bool freeze_mlp = false;   // stage 3: keep the MLPs fixed
  double temperature = 1.0;  // stage 3: softmax temperature of the soft cross-entropy
};

struct StudentRecipe {
  std::string kind = "discrete_mamba2";  // discrete_mamba2 | mamba2 | gated_deltanet | mamba3 | oryx
  int n_qk_heads = 0;  // DM2: B/C heads; Mamba-2/3: unused (n_groups); Gated DeltaNet: q/k heads
  int n_v_heads = 0;   // DM2: x heads; Mamba-2: heads; Gated DeltaNet: v-heads
  int head_dim = 0;    // P; Gated DeltaNet: key head dim
  int d_state = 0;     // N; Gated DeltaNet: value head dim
  int n_groups = 1;    // Mamba-2/3 B/C groups
  int conv_kernel = 4;
  int chunk_size = 64;
  std::string init = "attention";      // attention | random
  std::vector<int> attention_layers;   // hybrid: teacher attention layers kept as they are
  // kind oryx (student_oryx.cc): the teacher's attention dims; the recurrence and the mean fraction of
  // each training batch's tokens run in attention mode (the rest recurrent).
  std::string oryx_recurrence = "ssd";  // ssd | gdn
  double oryx_attention_fraction = 0.1;
  // Head hybrid (discrete_mamba2 only): teacher attention heads kept as softmax attention inside the
  // student's layers (the engine's head-level hybrid, mixers/head_hybrid.h). `keep_heads` is either the
  // file `subq heads --out` writes (ranked; the first keep_top_k heads, or keep_fraction of all heads,
  // are kept) or an explicit list of [layer, head] pairs. Resolved into kept_heads at load.
  std::string keep_heads_file;
  int keep_top_k = 0;
  double keep_fraction = 0;
  std::vector<std::pair<int, int>> kept_heads;  // (layer, head), in keep order
  int mimo_rank = 1;                   // mamba3: 1 = SISO, R > 1 = MIMO rank R (SPEC 4)
  bool outproj_norm = false;           // mamba3: RMSNorm per head before the gate (is_outproj_norm)
  double rope_fraction = 0.5;          // mamba3: rotary angles = d_state * rope_fraction / 2 (0.5 or 1.0)
};

struct DataRecipe {
  std::vector<std::string> files;          // plain-text corpora, tokenised with the teacher's tokenizer
  std::string shards;                      // or: a folder written by `subq data prepare` (its own held-out split)
  std::string separator = "<|endoftext|>";  // documents are split on it, each gets BOS; "" = whole file
  double held_out_fraction = 0.05;         // tail of the documents kept for held-out perplexity
  int64_t eval_tokens = 65536;             // held-out tokens scored for perplexity (cap)
  int64_t teacher_samples = 0;             // > 0: distill on this many sequences sampled from the teacher
  double sample_temperature = 1.0;
};

struct OptimRecipe {
  double beta1 = 0.9, beta2 = 0.95, weight_decay = 0.1, eps = 1e-8;
  double grad_clip = 1.0;        // max global grad norm (0 = off)
  double warmup_fraction = 0.1;  // of each stage's steps
  double decay_fraction = 0.1;   // last fraction of the steps decays linearly to min_lr
  double min_lr = 1e-8;
};

// How the math runs (train/compute.h): precision, memory, data-parallel communication.
struct ComputeRecipe {
  std::string dtype = "f32";              // f32 | bf16: autocast of teacher and student compute (weights, AdamW state f32)
  bool tf32 = true;                       // CUDA: TF32 for the matmuls left in f32
  bool activation_checkpointing = false;  // recompute each student block in backward (stages 2-3)
  int stage1_head_chunk = 0;              // stage 1: heads materialised at once per layer (0 = all)
  int64_t bucket_mb = 25;                 // data-parallel gradient all-reduce bucket size
};

struct Recipe {
  std::string path;       // the YAML file
  std::string teacher;    // checkpoint path (HF folder, llama2.c .bin, .gguf)
  std::string tokenizer;  // optional override of the teacher's tokenizer
  uint64_t seed = 1234;
  int seq_len = 256;
  int micro_batch = 16;  // sequences per forward/backward (gradient accumulation fills batch_tokens)
  // Optimiser steps between checkpoints (each stage end saves too). 0 = no checkpoints at all: for
  // throughput benches, where a 1B student's checkpoint (f32 weights + AdamW state, ~17 GB) takes longer
  // to write than the steps it would guard.
  int checkpoint_every = 50;
  std::string probe_prompt = "Once upon a time there was a little girl";
  StudentRecipe student;
  DataRecipe data;
  OptimRecipe optim;
  ComputeRecipe compute;
  StageRecipe stages[3];  // matrix_orientation, hidden_state, end_to_end
};

inline const char* StageName(int s) {
  static const char* kNames[3] = {"matrix_orientation", "hidden_state", "end_to_end"};
  return kNames[s];
}

// Reads, applies `overrides` ("dotted.key=yaml value", e.g. "stages.end_to_end.tokens=4096") and validates.
// Paths in the file may use ${SUBQ_DATA} (env var, else <recipe dir>/../../shared/data) and are otherwise
// relative to the recipe's folder.
Result<Recipe> LoadRecipe(const std::string& path, const std::vector<std::string>& overrides = {});
// Same from YAML text (`origin` names it in errors, `base_dir` resolves relative paths).
Result<Recipe> ParseRecipe(const std::string& yaml, const std::string& origin, const std::string& base_dir,
                           const std::vector<std::string>& overrides = {});

}  // namespace subq::train
