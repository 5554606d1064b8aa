// subq convert: writes a model in a format other tools read -- an HF folder in the layout transformers (or
// cartesia's Llamba code) loads (io/hf_export.h), or a GGUF file llama.cpp loads (io/gguf_export.h).
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "apps/common.h"
#include "io/gguf_export.h"
#include "io/hf_export.h"

namespace subq {
namespace {

struct ConvertOptions {
  std::string model, to, out, tokenizer;
};

int RunConvert(const ConvertOptions& o) {
  if (o.to == "hf") {
    if (!o.tokenizer.empty()) return ReportError(Errorf("convert: --tokenizer applies to --to gguf only"));
    auto r = ExportHf(o.model, o.out);
    if (!r.ok()) return ReportError(r.status());
    std::printf("%s -> %s: %s, %d tensors, %.2f MB; tokenizer files: %s\n", o.model.c_str(), o.out.c_str(),
                r->layout.c_str(), r->tensors, r->bytes / 1e6,
                r->copied.empty() ? "none" : fmt::format("{}", fmt::join(r->copied, ", ")).c_str());
    return 0;
  }
  auto r = ExportGguf(o.model, o.out, o.tokenizer);
  if (!r.ok()) return ReportError(r.status());
  std::printf("%s -> %s: GGUF arch %s, %d tensors, %.2f MB; vocabulary from %s\n", o.model.c_str(), o.out.c_str(),
              r->arch.c_str(), r->tensors, r->bytes / 1e6, r->vocab_source.c_str());
  return 0;
}

}  // namespace

void AddConvertCommand(CLI::App& app) {
  auto o = std::make_shared<ConvertOptions>();
  CLI::App* c = app.add_subcommand(
      "convert", "Write a model for other tools: an HF folder (transformers, cartesia Llamba) or GGUF (llama.cpp)");
  c->add_option("--model", o->model, "llama2.c .bin, .gguf, or a Hugging Face-style folder")->required();
  c->add_option("--to", o->to, "hf | gguf")->required()->check(CLI::IsMember({"hf", "gguf"}));
  c->add_option("--out", o->out, "output folder (hf) or .gguf file (gguf)")->required();
  c->add_option("--tokenizer", o->tokenizer, "gguf: SentencePiece .model for the vocabulary (default: the model's)");
  c->callback([o] { ExitCode() = RunConvert(*o); });
}

}  // namespace subq
