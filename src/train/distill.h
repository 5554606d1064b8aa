// `subq distill`: MOHAWK distillation of a Llama teacher into a Discrete Mamba-2 / Mamba-2 / hybrid
// student (SPEC 6), driven by a recipe. The entry point and the scalar schedule math; no torch here so
// the CLI compiles without libtorch headers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace subq::train {

struct DistillOptions {
  std::string recipe;                  // recipes/*.yaml
  std::string out_dir;                 // export, metrics, plots, checkpoint
  std::string device = "cpu";          // cpu | cuda
  bool resume = false;                 // continue from the newest intact checkpoint in out_dir
  bool resume_anyway = false;          // resume even if the checkpoint's run fingerprint differs
  int keep_checkpoints = 2;            // checkpoints kept in out_dir/checkpoints (older ones are removed)
  int threads = 0;                     // torch intra-op threads (0 = all cores)
  std::vector<std::string> overrides;  // "dotted.key=value" recipe overrides
  std::vector<int> stages;             // 1-based stages to run (empty = all with tokens > 0)
  int64_t stop_after_steps = -1;       // testing: exit (as if killed) after this many optimiser steps
  int nproc = 1;                       // data-parallel ranks to launch on this host (train/distributed.h)
};

struct DistillResult {
  double teacher_ppl = 0, student_ppl = 0;
  int64_t eval_tokens = 0;
  double seconds = 0;
};

// Runs the recipe end to end: validate everything, train the stages, export the student to out_dir
// (config.json + model.safetensors + tokenizer) and score teacher and student on held-out text.
// Under torchrun's environment (RANK, WORLD_SIZE, ...) this process is one data-parallel rank: all
// ranks train, rank 0 writes checkpoints, the export and the summary (the others return an empty result).
Result<DistillResult> RunDistill(const DistillOptions& opts);
// opts.nproc > 1 outside such an environment: runs opts.nproc ranks of this executable (same arguments)
// on this host (rank 0 prints the result) and fails when any rank failed.
Status RunDistillLocalRanks(const DistillOptions& opts);

// Warmup-stable-decay learning rate of optimiser step `step` (0-based) of `steps`: linear warmup over
// ceil(warmup_fraction * steps) steps, flat at `peak`, then linear decay to min_lr over the last
// ceil(decay_fraction * steps) steps (the last step uses min_lr).
// Exception texts of libtorch span several lines (and a backtrace); errors are one line.
std::string FirstLine(const std::string& s);
// Seconds as h:mm:ss or m:ss for ETAs ("--:--" when unknown).
std::string Hms(double seconds);
double WsdLr(int64_t step, int64_t steps, double peak, double warmup_fraction, double decay_fraction,
             double min_lr);

}  // namespace subq::train
