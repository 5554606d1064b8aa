#include "eval/bench.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <fstream>
#include <random>
#include <sys/resource.h>

namespace subq {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxReps = 5;

double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs `once` (which returns the seconds it timed, or an error) until it has run kMaxReps times or
// min_seconds have passed in total; `reset` (untimed) runs before every repetition after the first.
Result<double> MedianTime(double min_seconds, const std::function<Result<double>()>& once,
                          const std::function<Status()>& reset) {
  std::vector<double> times;
  double total = 0;
  while (times.empty() || (total < min_seconds && static_cast<int>(times.size()) < kMaxReps)) {
    if (!times.empty()) SUBQ_RETURN_IF_ERROR(reset());
    SUBQ_ASSIGN_OR_RETURN(double t, once());
    times.push_back(t);
    total += t;
  }
  return Median(times);
}

int Argmax(const float* v, int n) { return static_cast<int>(std::max_element(v, v + n) - v); }

size_t ReadKb(const std::string& file, const std::string& key) {  // "Key:  123 kB" lines
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1)) * 1024;
  return 0;
}

std::string GiB(size_t b) { return fmt::format("{:.2f} GiB", b / 1073741824.0); }

// The CPU engine: SequenceStates of the model, one Workspace, greedy picks on the host.
class CpuBackend : public BenchBackend {
 public:
  CpuBackend(const Model& m, const BenchOptions& o)
      : m_(m), o_(o), ws_(m, std::max(o.max_tokens, *std::max_element(o.batches.begin(), o.batches.end())),
                          Threads{o.threads}) {}
  // Bytes a sequence of n tokens allocates: fixed + per_token * n, read off two small sequences (so a
  // large request is checked before anything of its size is allocated).
  Status Init() {
    const int n2 = std::min(m_.context_limit(), 257);
    SUBQ_ASSIGN_OR_RETURN(SequenceState a, m_.NewSequence(1));
    if (n2 <= 1) {
      fixed_ = a.CapacityBytes();
      return Status::Ok();
    }
    SUBQ_ASSIGN_OR_RETURN(SequenceState b, m_.NewSequence(n2));
    per_token_ = (b.CapacityBytes() - a.CapacityBytes()) / (n2 - 1);
    fixed_ = a.CapacityBytes() - std::min(a.CapacityBytes(), per_token_);
    return Status::Ok();
  }
  const ModelConfig& config() const override { return m_.config(); }
  int context_limit() const override { return m_.context_limit(); }
  size_t WeightBytes() const override { return m_.WeightBytes(); }
  size_t WorkspaceBytes() const override { return ws_.Bytes(); }
  size_t SequenceBytes(int n) const override { return fixed_ + per_token_ * static_cast<size_t>(n); }
  size_t AvailableBytes() const override {
    return o_.memory_limit > 0 ? o_.memory_limit : ReadKb("/proc/meminfo", "MemAvailable");
  }
  Status Reserve(int seqs, int cap) override {
    cap_ = std::max(cap, 1);
    seqs_.clear();
    seqs_.resize(seqs);
    logits_.assign(static_cast<size_t>(seqs) * m_.config().vocab_size, 0.0f);
    for (int i = 0; i < seqs; ++i) SUBQ_RETURN_IF_ERROR(Fresh(i));
    return Status::Ok();
  }
  Status Fresh(int id) override {
    SUBQ_ASSIGN_OR_RETURN(seqs_[id], m_.NewSequence(cap_));
    return Status::Ok();
  }
  Status Copy(int from, int to) override {
    seqs_[to] = seqs_[from].Copy();
    return Status::Ok();
  }
  Status Prefill(int id, const int* tokens, int n, int* next) override {
    SUBQ_RETURN_IF_ERROR(m_.Forward(tokens, n, seqs_[id], ws_, logits_.data()));
    *next = Argmax(logits_.data(), m_.config().vocab_size);
    return Status::Ok();
  }
  Status Step(int B, const int* ids, int* tokens) override {
    const int V = m_.config().vocab_size;
    in_.resize(B);
    for (int b = 0; b < B; ++b) in_[b] = SeqInput{&tokens[b], 1, &seqs_[ids[b]], logits_.data() + size_t(b) * V, false};
    SUBQ_RETURN_IF_ERROR(m_.Forward(in_, ws_));
    for (int b = 0; b < B; ++b) tokens[b] = Argmax(logits_.data() + size_t(b) * V, V);
    return Status::Ok();
  }
  size_t StateBytes(int id) const override { return seqs_[id].Bytes(); }
  size_t StateCapacityBytes(int id) const override { return seqs_[id].CapacityBytes(); }

 private:
  const Model& m_;
  const BenchOptions& o_;
  Workspace ws_;
  size_t fixed_ = 0, per_token_ = 0;
  int cap_ = 1;
  std::vector<SequenceState> seqs_;
  std::vector<float> logits_;
  std::vector<SeqInput> in_;
};

// Resets the kernel's peak-RSS mark (Linux: clear_refs 5), so a later PeakRss() is this model's.
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }
size_t PeakRss() {
  if (size_t hwm = ReadKb("/proc/self/status", "VmHWM")) return hwm;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;
}

class Bencher {
 public:
  Bencher(BenchBackend& b, const BenchOptions& o) : b_(b), o_(o) {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> tok(0, b.config().vocab_size - 1);
    const int longest = *std::max_element(o.prompt_lengths.begin(), o.prompt_lengths.end());
    prompt_.resize(std::max({longest, o.batch_context, 128}));
    for (int& t : prompt_) t = tok(rng);
  }

  // "" when `copies` sequences of n tokens (plus `extra` bytes) fit; else the reason.
  std::string CheckFits(int n, int copies, size_t extra) const {
    if (n > b_.context_limit()) return fmt::format("beyond context limit ({} tokens)", b_.context_limit());
    const size_t need = b_.SequenceBytes(n) * copies + extra, avail = b_.AvailableBytes();
    if (need > avail) return fmt::format("out of memory (needs {}, {} available)", GiB(need), GiB(avail));
    return "";
  }

  // Feeds prompt_[0, n) to a fresh sequence id; returns the seconds to the first token.
  Result<double> Prefill(int id, int n, int* next) {
    SUBQ_RETURN_IF_ERROR(b_.Fresh(id));
    const auto t0 = Clock::now();
    if (n > 0) SUBQ_RETURN_IF_ERROR(b_.Prefill(id, prompt_.data(), n, next));
    return Seconds(t0);
  }

  Result<double> Decode(int id, int first, int steps) {
    int tok = first;
    const auto t0 = Clock::now();
    for (int i = 0; i < steps; ++i) SUBQ_RETURN_IF_ERROR(b_.Step(1, &id, &tok));
    return Seconds(t0);
  }

  Result<PrefillCell> PrefillAndDecode(int L) {
    PrefillCell c;
    c.length = L;
    c.skip = CheckFits(L, 1, 0);
    if (!c.skip.empty()) return c;
    c.decode_skip = CheckFits(L + o_.gen, 1, 0);
    const int cap = c.decode_skip.empty() ? L + o_.gen : L;
    SUBQ_RETURN_IF_ERROR(b_.Reserve(2, cap));  // 0: the sequence, 1: its state after the prompt
    int next = 0;
    SUBQ_ASSIGN_OR_RETURN(c.ttft_s, MedianTime(o_.min_seconds, [&] { return Prefill(0, L, &next); },
                                               [] { return Status::Ok(); }));
    c.tok_s = L / c.ttft_s;
    if (c.decode_skip.empty()) {
      SUBQ_RETURN_IF_ERROR(b_.Copy(0, 1));
      SUBQ_ASSIGN_OR_RETURN(double t, MedianTime(o_.min_seconds, [&] { return Decode(0, next, o_.gen); },
                                                 [&] { return b_.Copy(1, 0); }));
      c.decode_tok_s = o_.gen / t;
    }
    c.state_bytes = b_.StateBytes(0), c.state_capacity_bytes = b_.StateCapacityBytes(0);
    return c;
  }

  Result<BatchCell> BatchDecode(int B) {
    BatchCell c;
    c.batch = B;
    const int n = o_.batch_context + o_.gen;
    c.skip = CheckFits(n, B, static_cast<size_t>(B) * b_.config().vocab_size * sizeof(float));
    if (!c.skip.empty()) return c;
    // Every sequence starts from one prefilled prompt (sequence B), copied B times.
    SUBQ_RETURN_IF_ERROR(b_.Reserve(B + 1, n));
    int proto_next = 0;
    SUBQ_ASSIGN_OR_RETURN(double t0, Prefill(B, o_.batch_context, &proto_next));
    (void)t0;
    std::vector<int> ids(B), toks(B);
    for (int i = 0; i < B; ++i) ids[i] = i;
    auto reset = [&]() -> Status {
      for (int i = 0; i < B; ++i) {
        SUBQ_RETURN_IF_ERROR(b_.Copy(B, i));
        toks[i] = proto_next;
      }
      return Status::Ok();
    };
    auto once = [&]() -> Result<double> {
      const auto t = Clock::now();
      for (int i = 0; i < o_.gen; ++i) SUBQ_RETURN_IF_ERROR(b_.Step(B, ids.data(), toks.data()));
      return Seconds(t);
    };
    SUBQ_RETURN_IF_ERROR(reset());
    SUBQ_ASSIGN_OR_RETURN(double t, MedianTime(o_.min_seconds, once, reset));
    c.tok_s_per_seq = o_.gen / t;
    c.aggregate_tok_s = c.tok_s_per_seq * B;
    c.state_bytes_per_seq = b_.StateBytes(0), c.state_capacity_bytes_per_seq = b_.StateCapacityBytes(0);
    return c;
  }

 private:
  BenchBackend& b_;
  const BenchOptions& o_;
  std::vector<int> prompt_;
};

}  // namespace

Result<ModelBench> BenchModel(const Model& model, const std::string& name, const BenchOptions& o) {
  if (o.threads < 1 || o.max_tokens < 1 || o.batches.empty())
    return Errorf("bench: threads and max_tokens must be >= 1, and batch sizes given");
  CpuBackend b(model, o);
  SUBQ_RETURN_IF_ERROR(b.Init());
  return BenchModel(b, name, o);
}

Result<ModelBench> BenchModel(BenchBackend& backend, const std::string& name, const BenchOptions& o) {
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(fmt::format("bench: {}: {}", name, s));
  };
  if (o.threads < 1 || o.gen < 1 || o.max_tokens < 1 || o.batch_context < 0)
    return Errorf("bench: threads, gen and max_tokens must be >= 1 and batch_context >= 0");
  if (o.prompt_lengths.empty() || o.batches.empty()) return Errorf("bench: no prompt lengths or batch sizes");
  ResetPeakRss();
  ModelBench r;
  r.name = name;
  r.family = backend.config().family;
  r.context_limit = backend.context_limit() == INT_MAX ? 0 : backend.context_limit();
  r.weight_bytes = backend.WeightBytes();
  Bencher b(backend, o);

  const auto t0 = Clock::now();  // warm-up: a short prompt and a few decode steps, untimed
  {
    const int n = std::max(1, std::min(128, backend.context_limit() - 8));
    SUBQ_RETURN_IF_ERROR(backend.Reserve(1, n + 8));
    int next = 0;
    SUBQ_ASSIGN_OR_RETURN(double t, b.Prefill(0, n, &next));
    SUBQ_ASSIGN_OR_RETURN(double t2, b.Decode(0, next, 8));
    (void)t, (void)t2;
  }
  r.warmup_s = Seconds(t0);
  r.workspace_bytes = backend.WorkspaceBytes();
  say(fmt::format("warm-up {:.2f} s, weights {}, workspace {}", r.warmup_s, GiB(r.weight_bytes),
                  GiB(r.workspace_bytes)));
  for (int L : o.prompt_lengths) {
    SUBQ_ASSIGN_OR_RETURN(PrefillCell c, b.PrefillAndDecode(L));
    if (!c.skip.empty()) say(fmt::format("prompt {}: skipped, {}", L, c.skip));
    else
      say(fmt::format("prompt {}: prefill {:.1f} tok/s (first token {:.3f} s), decode {}", L, c.tok_s, c.ttft_s,
                      c.decode_skip.empty() ? fmt::format("{:.1f} tok/s", c.decode_tok_s) : c.decode_skip));
    r.prefill.push_back(c);
  }
  for (int B : o.batches) {
    SUBQ_ASSIGN_OR_RETURN(BatchCell c, b.BatchDecode(B));
    if (!c.skip.empty()) say(fmt::format("batch {}: skipped, {}", B, c.skip));
    else
      say(fmt::format("batch {}: {:.1f} tok/s per sequence, {:.1f} aggregate", B, c.tok_s_per_seq,
                      c.aggregate_tok_s));
    r.batch.push_back(c);
  }
  r.peak_rss_bytes = PeakRss();
  return r;
}

}  // namespace subq
