// Mode schedules of Oryx layers (mixers/oryx.h): which of the two modes -- softmax attention over the
// KV cache, or the linear recurrence -- produces a layer's output at each token position of a sequence.
// Both states are updated on every token whatever the mode, so the mode may change at any position.
// A schedule is per sequence (SequenceState::modes); positions no span covers use the model's default
// (ModelConfig::oryx.default_mode).
#pragma once
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace subq {

enum class MixerMode : uint8_t { kAttention = 0, kRecurrent = 1 };
const char* MixerModeName(MixerMode m);
bool ParseMixerMode(const std::string& s, MixerMode* out);

struct ModeSpan {
  int begin = 0, end = INT_MAX;  // positions [begin, end)
  MixerMode mode = MixerMode::kRecurrent;
};

struct ModeSchedule {
  std::vector<ModeSpan> spans;  // disjoint, sorted by begin

  // Spec forms (comma-separated items):
  //   "attention" | "recurrent"                 every position in that mode
  //   "prompt:attention,gen:recurrent"           prompt = positions [0, prompt_len), gen = the rest
  //   "attention:0-512,recurrent:512-"           explicit spans [a, b) ("a-" open-ended)
  // prompt_len < 0 means the caller has no prompt (eval): "prompt"/"gen" items are then an error.
  // Overlapping spans, bad numbers and unknown modes are errors naming the item.
  static Result<ModeSchedule> Parse(const std::string& spec, int prompt_len = -1);
  static ModeSchedule Uniform(MixerMode m) { return ModeSchedule{{ModeSpan{0, INT_MAX, m}}}; }

  bool empty() const { return spans.empty(); }
  MixerMode At(int pos, MixerMode fallback) const;
  // Positions of [begin, end) in mode m (fallback for uncovered ones).
  int64_t Count(MixerMode m, int begin, int end, MixerMode fallback) const;
  std::string ToString() const;
};

}  // namespace subq
