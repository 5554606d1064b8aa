// `subq distill --recipe R.yaml --out DIR [--device cpu|cuda] [--resume] [--threads N] [--nproc N] [--set k=v]...`
// MOHAWK distillation (train/distill.h); prints teacher and student held-out perplexity at the end.
#include <cstdio>
#include <cstdlib>

#include "apps/commands.h"
#include "train/distill.h"

namespace subq {

void AddDistillCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("distill", "Distill a Llama teacher into a subquadratic student (MOHAWK)");
  auto o = std::make_shared<train::DistillOptions>();
  cmd->add_option("--recipe", o->recipe, "Recipe YAML (recipes/*.yaml)")->required();
  cmd->add_option("--out", o->out_dir, "Output folder: exported student, metrics, plots, checkpoint")->required();
  cmd->add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--resume", o->resume, "Continue from the newest intact checkpoint in --out");
  cmd->add_flag("--resume-anyway", o->resume_anyway,
                "With --resume: continue even if the recipe, teacher or data changed (logged; a different "
                "world size is always refused)");
  cmd->add_option("--keep-checkpoints", o->keep_checkpoints, "Checkpoints to keep (default 2)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--threads", o->threads, "Torch CPU threads (default: all cores)");
  cmd->add_option("--set", o->overrides, "Recipe override key=value (dotted keys), repeatable");
  cmd->add_option("--nproc", o->nproc, "Data-parallel ranks on this host (Gloo on CPU, NCCL on CUDA); "
                  "under torchrun, its RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT are used instead")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--stages", o->stages, "Run only these stages (1-based, comma separated)")->delimiter(',');
  cmd->add_option("--stop-after-steps", o->stop_after_steps, "Testing: stop after N optimiser steps")
      ->group("");
  cmd->callback([o] {
    if (o->nproc > 1 && std::getenv("RANK") == nullptr) {  // launcher: the ranks do the work and the report
      Status st = train::RunDistillLocalRanks(*o);
      if (!st.ok()) {
        std::fprintf(stderr, "subq: error: %s\n", st.message().c_str());
        ExitCode() = 1;
      }
      return;
    }
    auto r = train::RunDistill(*o);
    if (!r.ok()) {
      std::fprintf(stderr, "subq: error: %s\n", r.status().message().c_str());
      ExitCode() = 1;
      return;
    }
    if (std::getenv("RANK") && std::atoi(std::getenv("RANK")) != 0) return;  // rank 0 reports
    std::printf("teacher held-out perplexity: %.4f (%lld tokens)\n", r->teacher_ppl,
                static_cast<long long>(r->eval_tokens));
    std::printf("student held-out perplexity: %.4f (ratio %.4f)\n", r->student_ppl, r->student_ppl / r->teacher_ppl);
    std::printf("exported to %s (%.1f s)\n", o->out_dir.c_str(), r->seconds);
  });
}

}  // namespace subq
