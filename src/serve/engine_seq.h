// One running choice of a request, private to the engine (engine.cc, speculative.cc).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/tokenizer.h"
#include "model/sampler.h"
#include "model/sequence_state.h"
#include "serve/engine.h"

namespace subq::serve {

struct Engine::Seq {
  std::shared_ptr<Request> req;
  int choice = 0;
  // prompt + generated; state.pos of them are consumed (once decoding, all but the last)
  std::vector<int> tokens;
  int prompt_len = 0;
  std::unique_ptr<BackendSeq> state;  // the target's state in its backend
  std::vector<float> ready_logits;  // a prompt restored whole from the cache: its last token's logits
  Sampler sampler{SamplerConfig{}};
  std::unique_ptr<DecodeStream> stream;
  std::string text;         // generated text so far
  size_t emitted = 0;       // bytes of text already sent
  size_t stop_hold = 0;     // bytes held back while a stop string could still complete
  int generated = 0;
  bool forked = false;      // n > 1: the other choices were copied from this one after prefill
  bool done = false;
  bool device_sampler = false;  // the backend's sampler is set (where it picks tokens: after the first)
  // Speculative decoding: the draft model's state (empty when this choice does not speculate).
  SequenceState draft;
  std::vector<int> proposal;  // draft tokens of the round in flight
  std::unique_ptr<BackendSnapshot> target_snap;  // rollback points of the round in flight
  std::optional<SequenceState> draft_snap;
};

}  // namespace subq::serve
