// subq inspect: config and tensor table of a checkpoint; optionally a mixing-matrix heatmap.
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "apps/common.h"
#include "io/quantized.h"
#include "io/tensor_check.h"
#include "util/plot.h"

namespace subq {
namespace {

struct InspectOptions {
  std::string model, tokenizer, prompt, png;
  bool mixing_matrix = false, no_check_weights = false;
  int layer = 0, head = 0;
};

int RunInspect(const InspectOptions& o) {
  if (!o.mixing_matrix) {
    auto ck = ReadCheckpoint(o.model);
    if (!ck.ok()) return ReportError(ck.status());
    if (!o.no_check_weights)
      if (Status w = CheckTensorsFinite(ck->tensors); !w.ok()) return ReportError(w);
    // Building the model validates every tensor's presence and shape.
    auto model = Model::FromCheckpoint(*ck);
    if (!model.ok()) return ReportError(model.status());
    std::printf("%s (%s)\n", o.model.c_str(), ck->format.c_str());
    std::printf("config:\n%s", ck->config.ToString().c_str());
    std::printf("context limit: %s\n", ContextLimitText(**model).c_str());
    for (const auto& m : ck->metadata) std::printf("  %s\n", m.c_str());
    std::printf("tensors (%zu):\n", ck->tensors.tensors().size());
    size_t total = 0;
    for (const auto& t : ck->tensors.tensors()) {
      std::printf("  %-56s %-5s %s\n", t.name.c_str(), DTypeName(t.dtype), ShapeStr(t.shape).c_str());
      if (!IsScaleOfQuantized(ck->tensors, t)) total += Tensor::NumelOf(LogicalShape(t));
    }
    std::printf("parameters: %zu\n", total);
    return 0;
  }
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/true, /*chunk=*/0, !o.no_check_weights);
  if (!lm.ok()) return ReportError(lm.status());
  std::vector<int> ids = lm->tokenizer->Encode(o.prompt, true);
  auto m = lm->model->MixingMatrix(ids, o.layer);
  if (!m.ok()) return ReportError(m.status());
  const int H = static_cast<int>(m->dim(0)), L = static_cast<int>(m->dim(1));
  if (o.head < 0 || o.head >= H) return ReportError(Errorf("--head {} out of range (layer {} has {} heads)", o.head, o.layer, H));
  Tensor one({L, L});
  std::copy(m->ptr() + static_cast<size_t>(o.head) * L * L, m->ptr() + static_cast<size_t>(o.head + 1) * L * L, one.ptr());
  const char* kind = MixerKindName(lm->model->config().layers[o.layer].mixer);
  std::printf("mixing matrix: layer %d (%s) head %d, %d tokens\n", o.layer, kind, o.head, L);
  if (L <= 24) {
    for (int i = 0; i < L; ++i) {
      for (int j = 0; j < L; ++j) std::printf(" %7.4f", one.data[static_cast<size_t>(i) * L + j]);
      std::printf("\n");
    }
  }
  if (!o.png.empty()) {
    Status st = PlotHeatmapsPng(one, {}, fmt::format("layer {} ({}) head {}", o.layer, kind, o.head), o.png);
    if (!st.ok()) return ReportError(st);
    std::fprintf(stderr, "subq: wrote %s\n", o.png.c_str());
  }
  return 0;
}

}  // namespace

void AddInspectCommand(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* c = app.add_subcommand("inspect", "Print a checkpoint's config and tensors, or a mixing matrix");
  c->add_option("--model", o->model, "llama2.c .bin, .gguf, or a Hugging Face-style folder")->required();
  c->add_option("--tokenizer", o->tokenizer, "tokenizer file (for --mixing-matrix)");
  c->add_flag("--mixing-matrix", o->mixing_matrix, "materialize a layer's mixing matrix on --prompt");
  c->add_option("--layer", o->layer, "layer index")->check(CLI::NonNegativeNumber);
  c->add_option("--head", o->head, "head index")->check(CLI::NonNegativeNumber);
  c->add_option("--prompt", o->prompt, "prompt text for --mixing-matrix");
  c->add_option("--png", o->png, "write the heatmap to this PNG file (drawn by matplotlib: needs python3 with matplotlib)");
  AddNoCheckWeightsFlag(c, &o->no_check_weights);
  c->callback([o] {
    if (o->mixing_matrix && o->prompt.empty()) {
      ExitCode() = ReportError(Errorf("--mixing-matrix needs --prompt"));
      return;
    }
    ExitCode() = RunInspect(*o);
  });
}

}  // namespace subq
