// Subcommands of the `subq` binary, one file each (apps/cmd_*.cc).
#pragma once
#include <CLI/CLI.hpp>

namespace subq {

// Exit code of the subcommand that ran (callbacks set it; main returns it).
int& ExitCode();

void AddBenchCommand(CLI::App& app);
void AddGenerateCommand(CLI::App& app);
void AddInspectCommand(CLI::App& app);
void AddLogitsCommand(CLI::App& app);
void AddEvalCommand(CLI::App& app);
void AddHeadsCommand(CLI::App& app);
void AddTokenizeCommand(CLI::App& app);
void AddServeCommand(CLI::App& app);
void AddSampleCommand(CLI::App& app);
void AddQuantizeCommand(CLI::App& app);
void AddConvertCommand(CLI::App& app);
void AddDataCommand(CLI::App& app);
#ifdef SUBQ_HAVE_TORCH
void AddDistillCommand(CLI::App& app);
void AddTrainCommand(CLI::App& app);
#endif

}  // namespace subq
