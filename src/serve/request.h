// A generation request as the scheduler sees it (already tokenized and validated), and the channel its
// results flow back through: the scheduler thread pushes events, the HTTP thread waits for them.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "model/sampler.h"

namespace subq::serve {

struct GenParams {
  int max_tokens = 16;
  SamplerConfig sampler;
  std::vector<std::string> stop;  // stop strings: generation ends before the first occurrence
  int logprobs = -1;              // -1: none; k >= 0: the sampled token's logprob plus the k most likely
  bool ignore_eos = false;
};

struct TopLogprob {
  int token;
  float logprob;
};

// One piece of one choice: new text (may be empty while a stop string could still match), the tokens it
// came from, and on the last event of a choice its finish reason ("stop", "length", "cancelled").
struct Event {
  int choice = 0;
  std::string text;
  std::vector<int> tokens;
  std::vector<float> logprobs;                   // per token, when requested
  std::vector<std::vector<TopLogprob>> top;      // per token, when requested
  std::string finish;                            // "" until the choice ends
  std::string error;                             // set when the engine failed this request
};

class Request {
 public:
  Request(std::vector<int> prompt, GenParams p, int n) : prompt(std::move(prompt)), params(std::move(p)), n(n) {}
  const std::vector<int> prompt;
  const GenParams params;
  const int n;  // choices sampled from one shared prefill

  // Scheduler side.
  void Push(Event e) {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  // HTTP side: waits up to `ms` for the next event.
  std::optional<Event> Pop(int ms) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::milliseconds(ms), [&] { return !events_.empty(); })) return std::nullopt;
    Event e = std::move(events_.front());
    events_.pop_front();
    return e;
  }
  // The client went away: the scheduler drops the request's sequences at its next step.
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace subq::serve
