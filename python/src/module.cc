// subq._subq: the nanobind glue between Python and the engine. Thin on purpose: loading goes through
// apps/common (LoadModel, as the CLI loads), scoring through eval/continuation_scoring, generation
// through serve::Engine (the ragged-batch scheduler of `subq serve`, with its sampler and stop strings).
// Every engine error becomes subq.SubqError carrying the engine's message; the GIL is released while
// the engine computes.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/common.h"
#include "eval/continuation_scoring.h"
#include "glue.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace subq::py {
namespace {

using FloatArray = nb::ndarray<nb::numpy, float>;

// A float32 numpy array that owns `v` (shape `shape`).
FloatArray ToNumpy(std::vector<float>&& v, std::vector<size_t> shape) {
  auto* owned = new std::vector<float>(std::move(v));
  nb::capsule free(owned, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  return FloatArray(owned->data(), shape.size(), shape.data(), free);
}

std::vector<int> Ids(const std::vector<int64_t>& ids, int vocab, const char* what) {
  std::vector<int> out;
  out.reserve(ids.size());
  for (int64_t t : ids) {
    if (t < 0 || t >= vocab) Throw(Errorf("{}: token id {} outside the vocabulary (0..{})", what, t, vocab - 1));
    out.push_back(static_cast<int>(t));
  }
  return out;
}

class PyState {
 public:
  PyState(SequenceState s, const PyModel* m) : state(std::move(s)), model(m) {}
  SequenceState state;
  const PyModel* model;
  PyState Snapshot() const { return PyState(state.Snapshot(), model); }
  void Restore(const PyState& snap) {
    if (snap.state.owner != state.owner) Throw(Errorf("restore: the snapshot belongs to another model"));
    state.Restore(snap.state);
  }
};

PyModel Load(const std::string& path, const std::string& tokenizer, const std::string& device, int threads,
             const std::string& state_dtype, bool check_weights) {
  if (device != "cpu")
    Throw(Errorf("device '{}': the Python package runs the CPU engine (use `subq generate --device cuda` for the GPU)",
                 device));
  if (threads < 0) Throw(Errorf("threads must be >= 0 (0: SUBQ_THREADS or all CPUs), got {}", threads));
  nb::gil_scoped_release unlocked;
  PyModel m;
  m.path = path;
  m.threads = threads > 0 ? Threads{threads} : Threads::Default();
  m.lm = Check(LoadModel(path, tokenizer, /*load_tokenizer=*/true, /*chunk=*/0, check_weights, state_dtype));
  return m;
}

FloatArray Forward(PyModel& m, const std::vector<int64_t>& ids_in, PyState& st, bool all_logits) {
  const Model& model = *m.lm.model;
  const int V = model.config().vocab_size;
  std::vector<int> ids = Ids(ids_in, V, "forward");
  if (ids.empty()) Throw(Errorf("forward: no tokens given"));
  if (st.model != &m) Throw(Errorf("forward: the state was made by another model"));
  const size_t rows = all_logits ? ids.size() : 1;
  std::vector<float> logits(rows * V);
  {
    nb::gil_scoped_release unlocked;
    std::lock_guard<std::mutex> lk(*m.mu);
    Workspace& ws = m.Ws(static_cast<int>(ids.size()));
    Check(model.Forward(ids.data(), static_cast<int>(ids.size()), st.state, ws, logits.data(), all_logits));
  }
  if (!all_logits) return ToNumpy(std::move(logits), {static_cast<size_t>(V)});
  return ToNumpy(std::move(logits), {rows, static_cast<size_t>(V)});
}

PyState NewState(const PyModel& m, int max_context) {
  const Model& model = *m.lm.model;
  if (max_context < 0) Throw(Errorf("new_state: max_context must be >= 0"));
  return PyState(Check(model.NewSequence(max_context)), &m);
}

// (logprob sums, greedy flags[, per-token logprobs]) of (context, continuation) id pairs.
nb::tuple Score(PyModel& m, const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& pairs,
                int batch_tokens, int max_sequences, bool token_logprobs) {
  const int V = m.lm.model->config().vocab_size;
  std::vector<ContinuationRequest> reqs;
  reqs.reserve(pairs.size());
  for (const auto& [c, k] : pairs) reqs.push_back({Ids(c, V, "context"), Ids(k, V, "continuation")});
  std::vector<ContinuationScore> scores;
  {
    nb::gil_scoped_release unlocked;
    ScoringOptions o;
    o.batch_tokens = batch_tokens;
    o.max_sequences = max_sequences;
    o.threads = m.threads;
    scores = Check(ScoreContinuations(*m.lm.model, reqs, o));
  }
  std::vector<double> lp(scores.size());
  std::vector<bool> greedy(scores.size());
  nb::list per_token;
  for (size_t i = 0; i < scores.size(); ++i) {
    lp[i] = scores[i].logprob;
    greedy[i] = scores[i].greedy;
    if (token_logprobs) per_token.append(ToNumpy(std::move(scores[i].token_logprobs), {reqs[i].continuation.size()}));
  }
  return nb::make_tuple(lp, greedy, per_token);
}

}  // namespace
}  // namespace subq::py

NB_MODULE(_subq, m) {
  using namespace subq;
  using namespace subq::py;
  m.doc() = "subq engine bindings (use the `subq` package, not this module)";
  nb::exception<SubqError>(m, "SubqError", PyExc_RuntimeError);

  nb::class_<PyState>(m, "State")
      .def_prop_ro("pos", [](const PyState& s) { return s.state.pos; }, "tokens consumed so far")
      .def_prop_ro("max_context", [](const PyState& s) { return s.state.max_context; })
      .def_prop_ro("nbytes", [](const PyState& s) { return s.state.Bytes(); }, "filled state bytes")
      .def("snapshot", &PyState::Snapshot, "an exact copy to restore later", nb::keep_alive<0, 1>())
      .def("restore", &PyState::Restore, "snapshot"_a, "returns to the snapshot (exact)");

  nb::class_<PyTokenizer>(m, "Tokenizer")
      .def("encode", &PyTokenizer::Encode, "text"_a, "add_bos"_a = true)
      .def("decode", &PyTokenizer::Decode, "ids"_a)
      .def_prop_ro("vocab_size", [](const PyTokenizer& t) { return t.tok->vocab_size(); })
      .def_prop_ro("bos_id", [](const PyTokenizer& t) { return t.tok->bos_id(); })
      .def_prop_ro("eos_id", [](const PyTokenizer& t) { return t.tok->eos_id(); })
      .def_prop_ro("name", [](const PyTokenizer& t) { return t.tok->name(); });

  nb::class_<PyModel>(m, "Model")
      .def_prop_ro("config", &PyModel::ConfigDict)
      .def_prop_ro("config_text", [](const PyModel& p) { return p.lm.model->config().ToString(); })
      .def_prop_ro("context_limit", [](const PyModel& p) { return p.lm.model->context_limit(); })
      .def_prop_ro("vocab_size", [](const PyModel& p) { return p.lm.model->config().vocab_size; })
      .def_prop_ro("path", [](const PyModel& p) { return p.path; })
      .def_prop_ro("threads", [](const PyModel& p) { return p.threads.n; })
      .def("_tokenizer", [](const PyModel& p) { return PyTokenizer{p.lm.tokenizer.get()}; }, nb::keep_alive<0, 1>())
      .def("new_state", &NewState, "max_context"_a = 0, nb::keep_alive<0, 1>())
      .def("forward", &Forward, "ids"_a, "state"_a, "all_logits"_a = false)
      .def("score", &Score, "pairs"_a, "batch_tokens"_a = 512, "max_sequences"_a = 64, "token_logprobs"_a = false)
      .def("encode_pair",
           [](const PyModel& p, const std::string& ctx, const std::string& cont, bool add_bos) {
             ContinuationRequest r = EncodeContinuationPair(*p.lm.tokenizer, ctx, cont, add_bos);
             return std::make_pair(r.context, r.continuation);
           },
           "context"_a, "continuation"_a, "add_bos"_a = true)
      .def("generate", &Generate, "prompts"_a, "max_tokens"_a, "temperature"_a, "top_p"_a, "top_k"_a, "seed"_a,
           "stop"_a, "max_batch"_a, nb::call_guard<nb::gil_scoped_release>());

  m.def("load", &Load, "path"_a, "tokenizer"_a = "", "device"_a = "cpu", "threads"_a = 0, "state_dtype"_a = "f32",
        "check_weights"_a = true);
}
