#include "serve/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "serve/engine_seq.h"

namespace subq::serve {
namespace {

double Now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The backend's own sampler stream for a choice (used only where it picks tokens): a different seed
// than the host sampler's, which drew the choice's first token, so that no uniform draw is reused.
SamplerConfig DeviceSampler(SamplerConfig sc) {
  sc.seed ^= 0x9E3779B97F4A7C15ull;
  return sc;
}

}  // namespace

Engine::Engine(const Model& target, const Model* draft, const Tokenizer& tok, EngineOptions o)
    : Engine(MakeCpuBackend(target, o.step_tokens + o.max_batch * (o.spec_k + 2),
                            o.threads > 0 ? Threads{o.threads} : Threads::Default()),
             draft, tok, o) {}

Engine::Engine(std::unique_ptr<Backend> target, const Model* draft, const Tokenizer& tok, EngineOptions o)
    : target_(std::move(target)),
      draft_(draft),
      tok_(tok),
      o_(o),
      max_ctx_(o.max_context > 0 ? std::min(o.max_context, target_->context_limit()) : target_->context_limit()),
      vocab_(target_->vocab()),
      cache_(o.cache_bytes) {
  if (draft_) {
    draft_ctx_ = std::min(max_ctx_, draft_->context_limit());
    draft_ws_ = std::make_unique<Workspace>(*draft_, o.step_tokens + o.max_batch * (o.spec_k + 2),
                                            o.threads > 0 ? Threads{o.threads} : Threads::Default());
  }
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Engine::Admission Engine::Submit(std::shared_ptr<Request> r) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return Admission::kShuttingDown;
    if (static_cast<int>(queue_.size()) >= o_.max_queue) return Admission::kQueueFull;
    queue_.push_back(std::move(r));
    st_requests_++;
  }
  cv_.notify_all();
  return Admission::kQueued;
}

EngineStats Engine::Stats() const {
  EngineStats s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    s.queued = static_cast<int64_t>(queue_.size());
  }
  s.running = st_running_;
  s.requests = st_requests_;
  s.prompt_tokens = st_prompt_;
  s.prefilled_tokens = st_prefilled_;
  s.generated_tokens = st_generated_;
  s.cache_hits = st_hits_;
  s.cache_misses = st_misses_;
  s.cache_bytes = st_cache_bytes_;
  s.cache_entries = st_cache_entries_;
  s.state_bytes = st_state_bytes_;
  s.spec_proposed = st_proposed_;
  s.spec_accepted = st_accepted_;
  s.steps = st_steps_;
  s.tokens_per_s = st_tps_;
  return s;
}

void Engine::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty() || !running_.empty(); });
      if (stop_) break;
    }
    Admit();
    Status st = Step();
    if (!st.ok()) {
      for (auto& s : running_) s->req->Push(Event{s->choice, "", {}, {}, {}, "error", st.message()});
      running_.clear();
    }
    PublishStats();
  }
  std::deque<std::shared_ptr<Request>> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    left.swap(queue_);
  }
  for (auto& s : running_)
    if (!s->done) s->req->Push(Event{s->choice, "", {}, {}, {}, "cancelled", ""});
  running_.clear();
  for (auto& r : left)
    for (int c = 0; c < r->n; ++c) r->Push(Event{c, "", {}, {}, {}, "cancelled", ""});
}

void Engine::Admit() {
  int active = 0;
  for (const auto& s : running_) active += s->forked ? 1 : s->req->n;
  std::vector<std::shared_ptr<Request>> take;
  {
    std::lock_guard<std::mutex> lk(mu_);
    while (!queue_.empty()) {
      auto& r = queue_.front();
      if (!r->cancelled() && active > 0 && active + r->n > o_.max_batch) break;
      if (!r->cancelled()) {
        active += r->n;
        take.push_back(r);
      }
      queue_.pop_front();
    }
  }
  for (auto& r : take) {
    auto s = std::make_unique<Seq>();
    s->req = r;
    s->tokens = r->prompt;
    s->prompt_len = static_cast<int>(r->prompt.size());
    s->forked = r->n == 1;
    auto st = target_->NewSequence(max_ctx_);
    if (!st.ok()) {
      for (int c = 0; c < r->n; ++c) r->Push(Event{c, "", {}, {}, {}, "error", st.status().message()});
      continue;
    }
    s->state = std::move(*st);
    cache_.Lookup(s->tokens, s->prompt_len, *target_, *s->state, s->ready_logits);
    SamplerConfig sc = r->params.sampler;
    s->sampler = Sampler(sc);
    s->stream = std::make_unique<DecodeStream>(tok_, r->prompt);
    for (const auto& stop : r->params.stop) s->stop_hold = std::max(s->stop_hold, stop.size() - 1);
    const bool greedy = sc.temperature <= 0.0f && r->params.logprobs < 0;
    if (draft_ && greedy && s->prompt_len + r->params.max_tokens + o_.spec_k + 1 <= draft_ctx_) {
      auto d = draft_->NewSequence(draft_ctx_);
      if (d.ok()) s->draft = std::move(*d);
    }
    st_prompt_ += s->prompt_len;
    running_.push_back(std::move(s));
  }
}

Status Engine::Step() {
  for (auto& s : running_)
    if (!s->done && s->req->cancelled()) Finish(*s, "cancelled");
  std::erase_if(running_, [](const std::unique_ptr<Seq>& s) { return s->done; });
  if (running_.empty()) return Status::Ok();

  std::vector<std::unique_ptr<Seq>> forks;
  for (size_t i = 0, n = running_.size(); i < n; ++i) {  // prompts restored whole: sample right away
    Seq& s = *running_[i];
    if (s.ready_logits.empty()) continue;
    if (!s.forked) Fork(s, s.ready_logits.data(), forks);
    PickAndEmit(s, s.ready_logits.data());
    s.ready_logits.clear();
  }
  for (auto& f : forks) running_.push_back(std::move(f));
  forks.clear();

  std::vector<Seq*> spec;
  for (auto& s : running_)
    if (Speculates(*s)) spec.push_back(s.get());
  if (!spec.empty()) ProposeDrafts(spec);
  if (draft_) DraftCatchUp(o_.step_tokens);

  // Decoding sequences first (one token, a short catch-up after a rejected draft, or a verify block),
  // then prefill chunks within the token budget, each ending at a snapshot boundary where one falls.
  struct Item {
    Seq* s;
    std::vector<int> in;
    int pending;  // tokens of `tokens` fed (the rest of `in` is the draft proposal)
    int pos_before;
    size_t row;   // first logits row
    bool host_logits;  // false: the backend picks the next token (Feed::next)
  };
  std::vector<Item> items;
  const int decode_max = o_.spec_k + 2;
  int budget = o_.step_tokens;
  size_t rows = 0;
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& sp : running_) {
      Seq& s = *sp;
      const int pending = static_cast<int>(s.tokens.size()) - s.state->pos();
      if (s.done || pending <= 0 || (pass == 0) != (pending <= decode_max)) continue;
      int n = pending;
      if (pass == 1) {
        if (budget <= 0) break;
        n = std::min(n, budget);
        if (o_.cache_every > 0) {
          const int boundary = (s.state->pos() / o_.cache_every + 1) * o_.cache_every;
          if (boundary < s.state->pos() + n) n = boundary - s.state->pos();
        }
        budget -= n;
      }
      const int pos = s.state->pos();
      Item it{&s, std::vector<int>(s.tokens.begin() + pos, s.tokens.begin() + pos + n), n, pos, rows, true};
      if (!s.proposal.empty()) {
        it.in.insert(it.in.end(), s.proposal.begin(), s.proposal.end());
        s.target_snap = target_->Snapshot(*s.state);
        if (!s.target_snap) return Errorf("no memory left for the speculative rollback snapshot");
        rows += it.in.size();
      } else if (target_->picks_tokens() && n == 1 && s.forked && s.req->params.logprobs < 0 &&
                 pos + 1 != s.prompt_len) {
        it.host_logits = false;  // a plain decode step: the backend picks the token
        if (!s.device_sampler) {    // its stream starts here, whether or not the prompt came from the cache
          SamplerConfig sc = s.req->params.sampler;
          sc.seed += static_cast<uint64_t>(s.choice);
          target_->SetSampler(*s.state, DeviceSampler(sc));
          s.device_sampler = true;
        }
      } else {
        rows += 1;
      }
      items.push_back(std::move(it));
    }
  }
  if (logits_.size() < rows * vocab_) logits_.resize(rows * vocab_);
  std::vector<Feed> batch;
  for (auto& it : items)
    batch.push_back(Feed{it.s->state.get(), it.in.data(), static_cast<int>(it.in.size()),
                         it.host_logits ? logits_.data() + it.row * vocab_ : nullptr, !it.s->proposal.empty()});
  if (!batch.empty()) {
    SUBQ_RETURN_IF_ERROR(target_->Forward(batch));
    ++st_steps_;
  }

  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    Seq& s = *it.s;
    const int before = std::min(it.pos_before, s.prompt_len);
    st_prefilled_ += std::min(it.pos_before + it.pending, s.prompt_len) - before;
    if (!it.host_logits) {
      const int next = batch[i].next;
      if (next < 0 || next >= vocab_) {
        s.req->Push(Event{s.choice, "", {}, {}, {}, "error", "the model produced non-finite logits"});
        s.done = true;
      } else {
        Emit(s, next, nullptr);
      }
      continue;
    }
    float* lg = logits_.data() + it.row * vocab_;
    if (!s.proposal.empty()) {
      AcceptDrafts(s, lg, it.pending);
      continue;
    }
    const int pos = s.state->pos();
    if (pos < static_cast<int>(s.tokens.size())) {  // a prefill chunk ended at a snapshot boundary
      cache_.Insert(s.tokens, pos, *target_, *s.state, lg, vocab_);
      continue;
    }
    if (pos == s.prompt_len) cache_.Insert(s.tokens, pos, *target_, *s.state, lg, vocab_);
    if (!s.forked) Fork(s, lg, forks);
    PickAndEmit(s, lg);
  }
  for (auto& f : forks) running_.push_back(std::move(f));
  return Status::Ok();
}

// n > 1: the other choices start from copies of the prefilled state, each with its own sampler seed.
void Engine::Fork(Seq& s, const float* logits, std::vector<std::unique_ptr<Seq>>& out) {
  s.forked = true;
  std::vector<float> lg(logits, logits + vocab_);
  for (int c = 1; c < s.req->n; ++c) {
    auto f = std::make_unique<Seq>();
    f->req = s.req;
    f->choice = c;
    f->tokens = s.tokens;
    f->prompt_len = s.prompt_len;
    auto st = target_->Copy(*s.state);
    if (!st.ok()) {
      s.req->Push(Event{c, "", {}, {}, {}, "error", st.status().message()});
      continue;
    }
    f->state = std::move(*st);
    if (!s.draft.layers.empty()) f->draft = s.draft.Copy();
    SamplerConfig sc = s.req->params.sampler;
    sc.seed += static_cast<uint64_t>(c);
    f->sampler = Sampler(sc);
    f->stream = std::make_unique<DecodeStream>(tok_, s.req->prompt);
    f->stop_hold = s.stop_hold;
    f->forked = true;
    std::copy(logits, logits + vocab_, lg.begin());
    PickAndEmit(*f, lg.data());
    out.push_back(std::move(f));
  }
}

void Engine::PickAndEmit(Seq& s, float* logits) {
  if (s.req->params.logprobs < 0) {
    Emit(s, s.sampler.Sample(logits, vocab_), nullptr);
    return;
  }
  scratch_.assign(logits, logits + vocab_);  // the sampler rescales logits in place
  Emit(s, s.sampler.Sample(logits, vocab_), scratch_.data());
}

void Engine::Emit(Seq& s, int token, const float* raw) {
  const GenParams& p = s.req->params;
  if (!p.ignore_eos && (token == tok_.eos_id() || token == target_->eos_id())) {
    Finish(s, "stop");
    return;
  }
  s.tokens.push_back(token);
  ++s.generated;
  ++st_generated_;
  Event e;
  e.choice = s.choice;
  e.tokens = {token};
  if (raw) {  // log-softmax of the model's distribution (before temperature / top-p)
    const float mx = *std::max_element(raw, raw + vocab_);
    double sum = 0;
    for (int i = 0; i < vocab_; ++i) sum += std::exp(static_cast<double>(raw[i] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    e.logprobs = {raw[token] - lse};
    std::vector<int> idx(vocab_);
    for (int i = 0; i < vocab_; ++i) idx[i] = i;
    const int k = std::min(p.logprobs, vocab_);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return raw[a] > raw[b]; });
    std::vector<TopLogprob> top;
    for (int i = 0; i < k; ++i) top.push_back({idx[i], raw[idx[i]] - lse});
    e.top = {std::move(top)};
  }
  s.text += s.stream->Next(token);
  size_t cut = std::string::npos;
  for (const auto& stop : p.stop) cut = std::min(cut, s.text.find(stop, s.emitted));
  if (cut != std::string::npos) {
    s.text.resize(cut);
    e.text = s.text.substr(s.emitted);
    s.emitted = s.text.size();
    s.req->Push(std::move(e));
    Finish(s, "stop");
    return;
  }
  const bool end = s.generated >= p.max_tokens || static_cast<int>(s.tokens.size()) >= max_ctx_;
  const size_t hold = end ? 0 : s.stop_hold;  // a stop string could still start in the last bytes
  const size_t safe = s.text.size() > hold ? s.text.size() - hold : 0;
  if (safe > s.emitted) {
    e.text = s.text.substr(s.emitted, safe - s.emitted);
    s.emitted = safe;
  }
  s.req->Push(std::move(e));
  if (end) Finish(s, "length");
}

void Engine::Finish(Seq& s, const std::string& reason) {
  s.done = true;
  if (reason == "cancelled") return;
  Event e;
  e.choice = s.choice;
  e.text = s.text.substr(s.emitted);
  s.emitted = s.text.size();
  e.finish = reason;
  s.req->Push(std::move(e));
  // The state after the generated text: a follow-up turn that repeats it restores from here.
  const int pos = s.state->pos();
  if (pos > s.prompt_len && pos <= static_cast<int>(s.tokens.size())) cache_.Insert(s.tokens, pos, *target_, *s.state);
}

void Engine::PublishStats() {
  int64_t bytes = 0;
  for (const auto& s : running_) bytes += s->state->bytes() + s->draft.CapacityBytes();
  st_state_bytes_ = bytes;
  st_running_ = static_cast<int64_t>(running_.size());
  st_hits_ = cache_.hits();
  st_misses_ = cache_.misses();
  st_cache_bytes_ = cache_.bytes();
  st_cache_entries_ = cache_.entries();
  const double t = Now();
  tps_window_.emplace_back(t, st_generated_.load());
  while (tps_window_.size() > 2 && tps_window_.front().first < t - 5.0) tps_window_.pop_front();
  const auto& [t0, g0] = tps_window_.front();
  st_tps_ = t > t0 ? (tps_window_.back().second - g0) / (t - t0) : 0.0;
}

}  // namespace subq::serve
