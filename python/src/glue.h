// Shared pieces of the Python extension: the loaded model as Python holds it, engine errors as a C++
// exception that nanobind turns into subq.SubqError, and generation through serve::Engine.
#pragma once
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <nanobind/nanobind.h>

#include "apps/common.h"
#include "model/workspace.h"
#include "util/status.h"

namespace subq::py {

// Raised for every engine error; Python sees subq.SubqError (a RuntimeError) with the engine's message.
class SubqError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void Throw(const Status& s) { throw SubqError(s.message()); }
inline void Check(const Status& s) {
  if (!s.ok()) Throw(s);
}
template <typename T>
T Check(Result<T>&& r) {
  if (!r.ok()) Throw(r.status());
  return std::move(r).value();
}

struct PyModel {
  LoadedModel lm;
  std::string path;
  Threads threads;
  std::unique_ptr<std::mutex> mu = std::make_unique<std::mutex>();  // guards ws (forward calls)
  std::unique_ptr<Workspace> ws;
  // The workspace of forward calls, grown to `tokens` rows (at most 512; longer inputs go in pieces).
  Workspace& Ws(int tokens);
  nanobind::dict ConfigDict() const;
};

struct PyTokenizer {
  const Tokenizer* tok;
  std::vector<int> Encode(const std::string& text, bool add_bos) const { return tok->Encode(text, add_bos); }
  std::string Decode(const std::vector<int>& ids) const;
};

struct Generation {
  std::string text;
  std::vector<int> tokens;
  std::string finish;  // "stop" (EOS or a stop string) or "length"
};

// Samples a continuation of every prompt (token ids) through one serve::Engine: all prompts decode as one
// ragged batch of up to max_batch sequences, each with its own sampler seeded with `seed`, so a prompt's
// text does not depend on the others. Called without the GIL.
std::vector<std::tuple<std::string, std::vector<int>, std::string>> Generate(
    const PyModel& m, const std::vector<std::vector<int>>& prompts, int max_tokens, float temperature, float top_p,
    int top_k, uint64_t seed, const std::vector<std::string>& stop, int max_batch);

}  // namespace subq::py
