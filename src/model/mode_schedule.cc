#include "model/mode_schedule.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace subq {

const char* MixerModeName(MixerMode m) { return m == MixerMode::kAttention ? "attention" : "recurrent"; }

bool ParseMixerMode(const std::string& s, MixerMode* out) {
  if (s == "attention") return *out = MixerMode::kAttention, true;
  if (s == "recurrent") return *out = MixerMode::kRecurrent, true;
  return false;
}

namespace {

bool ParseInt(const std::string& s, int* out) {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && *out >= 0;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t p = 0;
  while (true) {
    const size_t q = s.find(sep, p);
    out.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return out;
}

}  // namespace

Result<ModeSchedule> ModeSchedule::Parse(const std::string& spec, int prompt_len) {
  ModeSchedule s;
  MixerMode m;
  if (ParseMixerMode(spec, &m)) return Uniform(m);
  if (spec.empty()) return Errorf("mode schedule: empty (say e.g. 'prompt:attention,gen:recurrent')");
  for (const std::string& item : Split(spec, ',')) {
    const auto parts = Split(item, ':');
    if (parts.size() != 2)
      return Errorf("mode schedule item '{}': expected MODE:BEGIN-END, prompt:MODE or gen:MODE", item);
    ModeSpan span;
    if (parts[0] == "prompt" || parts[0] == "gen") {
      if (prompt_len < 0) return Errorf("mode schedule item '{}': no prompt here; give spans MODE:BEGIN-END", item);
      if (!ParseMixerMode(parts[1], &span.mode))
        return Errorf("mode schedule item '{}': unknown mode '{}' (attention or recurrent)", item, parts[1]);
      span.begin = parts[0] == "prompt" ? 0 : prompt_len;
      span.end = parts[0] == "prompt" ? prompt_len : INT_MAX;
    } else {
      if (!ParseMixerMode(parts[0], &span.mode))
        return Errorf("mode schedule item '{}': unknown mode '{}' (attention or recurrent)", item, parts[0]);
      const auto range = Split(parts[1], '-');
      if (range.size() != 2 || !ParseInt(range[0], &span.begin) ||
          !(range[1].empty() || ParseInt(range[1], &span.end)))
        return Errorf("mode schedule item '{}': range must be BEGIN-END or BEGIN- (non-negative integers)", item);
      if (span.end <= span.begin) return Errorf("mode schedule item '{}': empty range", item);
    }
    if (span.end > span.begin) s.spans.push_back(span);
  }
  std::sort(s.spans.begin(), s.spans.end(), [](const ModeSpan& a, const ModeSpan& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < s.spans.size(); ++i)
    if (s.spans[i].begin < s.spans[i - 1].end)
      return Errorf("mode schedule '{}': spans overlap at position {}", spec, s.spans[i].begin);
  return s;
}

MixerMode ModeSchedule::At(int pos, MixerMode fallback) const {
  for (const ModeSpan& s : spans)  // a handful of spans: a linear scan
    if (pos >= s.begin && pos < s.end) return s.mode;
  return fallback;
}

int64_t ModeSchedule::Count(MixerMode m, int begin, int end, MixerMode fallback) const {
  int64_t covered = 0, in_m = 0;
  for (const ModeSpan& s : spans) {
    const int64_t n = std::max(0, std::min(end, s.end) - std::max(begin, s.begin));
    covered += n;
    if (s.mode == m) in_m += n;
  }
  return in_m + (fallback == m ? std::max<int64_t>(0, end - begin) - covered : 0);
}

std::string ModeSchedule::ToString() const {
  std::string out;
  for (const ModeSpan& s : spans) {
    if (!out.empty()) out += ",";
    out += s.end == INT_MAX ? fmt::format("{}:{}-", MixerModeName(s.mode), s.begin)
                            : fmt::format("{}:{}-{}", MixerModeName(s.mode), s.begin, s.end);
  }
  return out;
}

}  // namespace subq
