// subq quantize: writes an HF folder with the model's matrices in q8, q4, f16 or bf16 (io/quantize.h).
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "apps/common.h"
#include "io/quantize.h"

namespace subq {
namespace {

struct QuantizeOptions {
  std::string model, type, out;
};

int RunQuantize(const QuantizeOptions& o) {
  auto r = QuantizeCheckpoint(o.model, o.type, o.out);
  if (!r.ok()) return ReportError(r.status());
  std::printf("%s (%s) -> %s: %zu matrices as %s, %.2f MB -> %.2f MB\n", o.model.c_str(), r->source_format.c_str(),
              o.out.c_str(), r->converted.size(), o.type.c_str(), r->bytes_in / 1e6, r->bytes_out / 1e6);
  if (!r->kept_f32.empty()) {
    std::printf("kept in f32 (columns not a multiple of 32): %zu\n", r->kept_f32.size());
    for (const auto& n : r->kept_f32) std::printf("  %s\n", n.c_str());
  }
  std::printf("tokenizer files: %s\n", r->copied.empty() ? "none" : fmt::format("{}", fmt::join(r->copied, ", ")).c_str());
  return 0;
}

}  // namespace

void AddQuantizeCommand(CLI::App& app) {
  auto o = std::make_shared<QuantizeOptions>();
  CLI::App* c = app.add_subcommand("quantize", "Write a copy of a model with q8/q4/f16/bf16 matrices (HF folder)");
  c->add_option("--model", o->model, "llama2.c .bin, .gguf, or a Hugging Face-style folder")->required();
  c->add_option("--type", o->type, "q8 | q4 | f16 | bf16")->required()->check(CLI::IsMember({"q8", "q4", "f16", "bf16"}));
  c->add_option("--out", o->out, "output folder (config.json, model.safetensors, tokenizer)")->required();
  c->callback([o] { ExitCode() = RunQuantize(*o); });
}

}  // namespace subq
