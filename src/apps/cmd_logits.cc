// subq logits: writes the logits of every position as a float32 .npy [L, vocab] (parity tests use it).
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "apps/common.h"
#include "util/npy.h"

namespace subq {
namespace {

struct LogitsOptions {
  std::string model, tokenizer, ids, prompt, out;
  bool step = false, no_check_weights = false;
  int chunk = 0;
};

int RunLogits(const LogitsOptions& o) {
  auto lm = LoadModel(o.model, o.tokenizer, /*load_tokenizer=*/!o.prompt.empty(), o.chunk,
                      !o.no_check_weights);
  if (!lm.ok()) return ReportError(lm.status());
  std::vector<int> ids;
  if (!o.prompt.empty()) {
    ids = lm->tokenizer->Encode(o.prompt, true);
  } else {
    auto r = ParseIds(o.ids);
    if (!r.ok()) return ReportError(r.status());
    ids = *r;
  }
  const Model& model = *lm->model;
  const int V = model.config().vocab_size, L = static_cast<int>(ids.size());
  if (L > model.context_limit())
    return ReportError(Errorf("{} tokens exceed the model's context limit of {}", L, model.context_limit()));
  Tensor logits({L, V});
  auto seq_or = model.NewSequence(model.has_attention() ? L : 0);
  if (!seq_or.ok()) return ReportError(seq_or.status());
  SequenceState seq = std::move(*seq_or);
  Workspace ws(model, std::min(L, 512));
  Status st;
  if (o.step) {
    for (int t = 0; t < L && st.ok(); ++t)
      st = model.Forward(&ids[t], 1, seq, ws, logits.ptr() + static_cast<size_t>(t) * V);
  } else {
    st = model.Forward(ids.data(), L, seq, ws, logits.ptr(), /*all_logits=*/true);
  }
  if (!st.ok()) return ReportError(st);
  st = WriteNpy(logits, o.out);
  if (!st.ok()) return ReportError(st);
  return 0;
}

}  // namespace

void AddLogitsCommand(CLI::App& app) {
  auto o = std::make_shared<LogitsOptions>();
  CLI::App* c = app.add_subcommand("logits", "Write the logits of every position to a .npy file");
  c->add_option("--model", o->model, "model path")->required();
  c->add_option("--tokenizer", o->tokenizer, "tokenizer file (with --prompt)");
  auto* ids = c->add_option("--ids", o->ids, "comma-separated token ids");
  auto* pr = c->add_option("--prompt", o->prompt, "prompt text (encoded with BOS)");
  ids->excludes(pr);
  c->add_option("--out", o->out, "output .npy path")->required();
  c->add_flag("--step", o->step, "feed tokens one at a time (decode path) instead of one prefill");
  c->add_option("--chunk", o->chunk, "override the chunk length of recurrent mixers")->check(CLI::PositiveNumber);
  AddNoCheckWeightsFlag(c, &o->no_check_weights);
  c->callback([o] {
    if (o->ids.empty() && o->prompt.empty()) {
      ExitCode() = ReportError(Errorf("logits: give --ids or --prompt"));
      return;
    }
    ExitCode() = RunLogits(*o);
  });
}

}  // namespace subq
