// `subq train --recipe R.yaml --out DIR [--device cpu|cuda] [--resume] [--threads N] [--set k=v]...`
// Next-token training of a Llama from scratch or from a checkpoint on a text / probe mixture
// (train/train_lm.h); prints the held-out perplexity of the exported model.
#include <cstdio>

#include "apps/commands.h"
#include "train/train_lm.h"

namespace subq {

void AddTrainCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a Llama (from scratch or fine-tune) on a text/probe mixture");
  auto o = std::make_shared<train::TrainOptions>();
  cmd->add_option("--recipe", o->recipe, "Training recipe YAML (recipes/retrieval-teacher.yaml)")->required();
  cmd->add_option("--out", o->out_dir, "Output folder: exported model, metrics, loss plot, checkpoints")->required();
  cmd->add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--resume", o->resume, "Continue from the newest intact checkpoint in --out");
  cmd->add_flag("--resume-anyway", o->resume_anyway, "With --resume: continue even if the recipe or data changed");
  cmd->add_option("--keep-checkpoints", o->keep_checkpoints, "Checkpoints to keep (default 2)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--threads", o->threads, "Torch CPU threads (default: all cores)");
  cmd->add_option("--set", o->overrides, "Recipe override key=value (dotted keys), repeatable");
  cmd->add_option("--stop-after-steps", o->stop_after_steps, "Testing: stop after N optimiser steps")->group("");
  cmd->callback([o] {
    auto r = train::RunTrain(*o);
    if (!r.ok()) {
      std::fprintf(stderr, "subq: error: %s\n", r.status().message().c_str());
      ExitCode() = 1;
      return;
    }
    std::printf("held-out perplexity: %.4f (%lld tokens, window %d)\n", r->held_out_ppl,
                static_cast<long long>(r->eval_tokens), r->window);
    std::printf("trained %lld steps, %lld params, %.1f s training; exported to %s (%.1f s)\n",
                static_cast<long long>(r->steps), static_cast<long long>(r->params), r->train_seconds,
                o->out_dir.c_str(), r->seconds);
  });
}

}  // namespace subq
