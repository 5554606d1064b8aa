// Shared plumbing of the CLI commands: loading a model and its tokenizer, reporting errors.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "eval/probes.h"
#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "model/model.h"

namespace subq {

struct LoadedModel {
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when load_tokenizer was false
};

// Reads the checkpoint at `model_path`, builds the model and (optionally) its tokenizer (`tokenizer_path`
// overrides the one found beside / inside the checkpoint), checking that their vocabularies match.
// chunk > 0 overrides the chunk length of every recurrent mixer. check_weights: refuse NaN/Inf weights.
// state_dtype ("f32" or "bf16") sets the precision of the recurrent state.
Result<LoadedModel> LoadModel(const std::string& model_path, const std::string& tokenizer_path, bool load_tokenizer,
                              int chunk = 0, bool check_weights = true, const std::string& state_dtype = "f32");
// Adds --state-dtype to a command.
void AddStateDtypeOption(CLI::App* c, std::string* state_dtype);
// Adds --no-check-weights (skip the load-time NaN/Inf scan of the weights) to a command.
void AddNoCheckWeightsFlag(CLI::App* cmd, bool* no_check_weights);

// "N tokens (max_seq_len; attention layers)" or "unlimited (state is constant)", for `inspect`.
std::string ContextLimitText(const Model& model);
// `tokens` if within the model's context limit. Beyond it: an error (`what` names the tokens, e.g.
// "prompt + --max-tokens") that mentions --allow-longer, or with allow_longer a warning on stderr and the
// limit instead (the engine never runs past it).
// --mode-schedule SPEC (model/mode_schedule.h) for a model with Oryx layers; prompt_len < 0: no prompt.
// A model without Oryx layers is an error (the flag would change nothing).
Result<ModeSchedule> ModeScheduleFor(const Model& model, const std::string& spec, int prompt_len);
Result<int64_t> FitContextLimit(const Model& model, int64_t tokens, const std::string& what, bool allow_longer);

// A probe (eval/probes.h) as the commands eval, heads and data probe take it.
struct ProbeOptions {
  ProbeSpec spec;
  int64_t n = 100;
  uint64_t seed = 0;
};
// Adds --probe NAME (required when `required`), --n, --seed, --pairs, --queries, --length, --modulus.
void AddProbeOptions(CLI::App* c, ProbeOptions* o, bool required);

// Ok when `device` ("cpu" or "cuda") can run here with that recurrent-state precision; else the reason
// ("no CUDA device: ..." without a usable GPU or without the CUDA backend in this build). Every command
// with --device checks this first.
Status RequireDevice(const std::string& device, const std::string& state_dtype = "f32");

// Prints "subq: error: <message>" to stderr and returns the exit code 1.
int ReportError(const Status& s);

// Parses "1,2,3" into ids.
Result<std::vector<int>> ParseIds(const std::string& s);

}  // namespace subq
