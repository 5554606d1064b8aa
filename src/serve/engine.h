// The serving engine: one scheduler thread steps every running sequence together through one batched
// forward of a Backend (backend.h: the CPU engine's ragged Model::Forward, or the CUDA runner). Each step carries one decode token per decoding sequence (k + 1 verify tokens
// when speculating) plus prefill chunks up to a token budget; requests join and leave between steps.
// Prompts restore the longest exact prefix snapshot from the PrefixCache and prefill only the rest.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "io/tokenizer.h"
#include "model/model.h"
#include "serve/backend.h"
#include "serve/prefix_cache.h"
#include "serve/request.h"
#include "util/status.h"

namespace subq::serve {

struct EngineOptions {
  int max_batch = 32;        // sequences (choices) decoding at once
  int max_context = 0;       // tokens per sequence (0: the model's limit)
  int max_queue = 512;       // requests waiting beyond which Submit refuses (429)
  int step_tokens = 256;     // prefill tokens per step, on top of the decode tokens
  size_t cache_bytes = size_t{256} << 20;
  int cache_every = 256;     // snapshot every this many prompt tokens too (0: end of prompt only)
  int spec_k = 4;            // draft tokens per speculative round
  int threads = 0;           // 0: Threads::Default()
};

struct EngineStats {
  int64_t queued = 0, running = 0, requests = 0;
  int64_t prompt_tokens = 0, prefilled_tokens = 0, generated_tokens = 0;
  int64_t cache_hits = 0, cache_misses = 0, cache_bytes = 0, cache_entries = 0, state_bytes = 0;
  int64_t spec_proposed = 0, spec_accepted = 0;
  int64_t steps = 0;  // batched forwards of the target
  double tokens_per_s = 0;
};

class Engine {
 public:
  // draft may be null (no speculation); it must share the target's vocabulary. The first form serves
  // target on the CPU.
  Engine(const Model& target, const Model* draft, const Tokenizer& tok, EngineOptions o);
  Engine(std::unique_ptr<Backend> target, const Model* draft, const Tokenizer& tok, EngineOptions o);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  enum class Admission { kQueued, kQueueFull, kShuttingDown };
  Admission Submit(std::shared_ptr<Request> r);
  // Tokens one sequence may hold (prompt + generated).
  int max_context() const { return max_ctx_; }
  EngineStats Stats() const;
  // Stops the scheduler; running and queued requests end with finish reason "cancelled".
  void Shutdown();

 private:
  struct Seq;
  void Loop();
  void Admit();
  Status Step();
  void PickAndEmit(Seq& s, float* logits);
  void Emit(Seq& s, int token, const float* raw_logits);
  void Finish(Seq& s, const std::string& reason);
  void Fork(Seq& s, const float* logits, std::vector<std::unique_ptr<Seq>>& out);
  bool Speculates(const Seq& s) const;
  void ProposeDrafts(std::vector<Seq*>& spec);
  void AcceptDrafts(Seq& s, const float* logits, int pending);
  void DraftCatchUp(int budget);
  void PublishStats();

  std::unique_ptr<Backend> target_;
  const Model* draft_;
  const Tokenizer& tok_;
  const EngineOptions o_;
  int max_ctx_, draft_ctx_ = 0, vocab_;
  std::unique_ptr<Workspace> draft_ws_;
  PrefixCache cache_;
  std::vector<std::unique_ptr<Seq>> running_;
  std::vector<float> logits_, draft_logits_, scratch_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> queue_;
  bool stop_ = false;

  std::atomic<int64_t> st_running_{0}, st_requests_{0}, st_prompt_{0}, st_prefilled_{0}, st_generated_{0};
  std::atomic<int64_t> st_hits_{0}, st_misses_{0}, st_cache_bytes_{0}, st_cache_entries_{0}, st_state_bytes_{0};
  std::atomic<int64_t> st_proposed_{0}, st_accepted_{0}, st_steps_{0};
  std::atomic<double> st_tps_{0};
  std::deque<std::pair<double, int64_t>> tps_window_;  // (time, generated) samples of the last seconds
  std::thread thread_;
};

}  // namespace subq::serve
