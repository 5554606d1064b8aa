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

// Bytes a sequence of n tokens allocates: fixed + per_token * n, read off two small sequences (so a
// large request is checked before anything of its size is allocated).
struct StateCost {
  size_t fixed = 0, per_token = 0;
  size_t For(int n) const { return fixed + per_token * static_cast<size_t>(n); }
};
Result<StateCost> MeasureStateCost(const Model& m) {
  const int n2 = std::min(m.context_limit(), 257);
  SUBQ_ASSIGN_OR_RETURN(SequenceState a, m.NewSequence(1));
  if (n2 <= 1) return StateCost{a.CapacityBytes(), 0};
  SUBQ_ASSIGN_OR_RETURN(SequenceState b, m.NewSequence(n2));
  StateCost c;
  c.per_token = (b.CapacityBytes() - a.CapacityBytes()) / (n2 - 1);
  c.fixed = a.CapacityBytes() - std::min(a.CapacityBytes(), c.per_token);
  return c;
}

size_t ReadKb(const std::string& file, const std::string& key) {  // "Key:  123 kB" lines
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1)) * 1024;
  return 0;
}

size_t AvailableBytes(const BenchOptions& o) {
  return o.memory_limit > 0 ? o.memory_limit : ReadKb("/proc/meminfo", "MemAvailable");
}

std::string GiB(size_t b) { return fmt::format("{:.2f} GiB", b / 1073741824.0); }

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
  Bencher(const Model& m, const BenchOptions& o, Workspace& ws, const StateCost& cost)
      : m_(m), o_(o), ws_(ws), cost_(cost), vocab_(m.config().vocab_size), logits_(vocab_) {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> tok(0, vocab_ - 1);
    const int longest = *std::max_element(o.prompt_lengths.begin(), o.prompt_lengths.end());
    prompt_.resize(std::max({longest, o.batch_context, 128}));
    for (int& t : prompt_) t = tok(rng);
  }

  // "" when a sequence of n tokens (times `copies`, plus `extra` bytes) fits; else the reason.
  std::string CheckFits(int n, int copies, size_t extra) const {
    if (n > m_.context_limit()) return fmt::format("beyond context limit ({} tokens)", m_.context_limit());
    const size_t need = cost_.For(n) * copies + extra, avail = AvailableBytes(o_);
    if (need > avail) return fmt::format("out of memory (needs {}, {} available)", GiB(need), GiB(avail));
    return "";
  }

  // Feeds prompt_[0, n) to a fresh sequence of capacity cap; returns the seconds to the first token.
  Result<double> Prefill(int n, int cap, SequenceState* seq, int* next) {
    SUBQ_ASSIGN_OR_RETURN(*seq, m_.NewSequence(std::max(cap, 1)));
    const auto t0 = Clock::now();
    if (n > 0) {
      SUBQ_RETURN_IF_ERROR(m_.Forward(prompt_.data(), n, *seq, ws_, logits_.data()));
      *next = Argmax(logits_.data(), vocab_);
    }
    return Seconds(t0);
  }

  Result<double> Decode(SequenceState& seq, int first, int steps) {
    int tok = first;
    const auto t0 = Clock::now();
    for (int i = 0; i < steps; ++i) {
      SUBQ_RETURN_IF_ERROR(m_.Forward(&tok, 1, seq, ws_, logits_.data()));
      tok = Argmax(logits_.data(), vocab_);
    }
    return Seconds(t0);
  }

  Result<PrefillCell> PrefillAndDecode(int L) {
    PrefillCell c;
    c.length = L;
    c.skip = CheckFits(L, 1, 0);
    if (!c.skip.empty()) return c;
    c.decode_skip = CheckFits(L + o_.gen, 1, 0);
    const int cap = c.decode_skip.empty() ? L + o_.gen : L;
    SequenceState seq;
    int next = 0;
    SUBQ_ASSIGN_OR_RETURN(c.ttft_s, MedianTime(o_.min_seconds, [&] { return Prefill(L, cap, &seq, &next); },
                                               [] { return Status::Ok(); }));
    c.tok_s = L / c.ttft_s;
    if (c.decode_skip.empty()) {
      const SequenceState after_prompt = seq.Snapshot();
      SUBQ_ASSIGN_OR_RETURN(double t, MedianTime(o_.min_seconds, [&] { return Decode(seq, next, o_.gen); }, [&] {
                              seq.Restore(after_prompt);
                              return Status::Ok();
                            }));
      c.decode_tok_s = o_.gen / t;
    }
    c.state_bytes = seq.Bytes(), c.state_capacity_bytes = seq.CapacityBytes();
    return c;
  }

  Result<BatchCell> BatchDecode(int B) {
    BatchCell c;
    c.batch = B;
    const int n = o_.batch_context + o_.gen;
    c.skip = CheckFits(n, B, static_cast<size_t>(B) * vocab_ * sizeof(float));
    if (!c.skip.empty()) return c;
    if (!have_proto_) {  // every sequence starts from one prefilled prompt (copied B times)
      SUBQ_ASSIGN_OR_RETURN(double t, Prefill(o_.batch_context, n, &proto_, &proto_next_));
      (void)t;
      have_proto_ = true;
    }
    std::vector<SequenceState> seqs(B);
    std::vector<float> logits(static_cast<size_t>(B) * vocab_);
    std::vector<int> toks(B);
    std::vector<SeqInput> in(B);
    auto reset = [&] {
      for (int b = 0; b < B; ++b) {
        seqs[b] = proto_.Copy();
        toks[b] = proto_next_;
        in[b] = SeqInput{&toks[b], 1, &seqs[b], logits.data() + static_cast<size_t>(b) * vocab_, false};
      }
      return Status::Ok();
    };
    auto once = [&]() -> Result<double> {
      const auto t0 = Clock::now();
      for (int i = 0; i < o_.gen; ++i) {
        SUBQ_RETURN_IF_ERROR(m_.Forward(in, ws_));
        for (int b = 0; b < B; ++b) toks[b] = Argmax(logits.data() + static_cast<size_t>(b) * vocab_, vocab_);
      }
      return Seconds(t0);
    };
    SUBQ_RETURN_IF_ERROR(reset());
    SUBQ_ASSIGN_OR_RETURN(double t, MedianTime(o_.min_seconds, once, reset));
    c.tok_s_per_seq = o_.gen / t;
    c.aggregate_tok_s = c.tok_s_per_seq * B;
    c.state_bytes_per_seq = seqs[0].Bytes(), c.state_capacity_bytes_per_seq = seqs[0].CapacityBytes();
    return c;
  }

 private:
  const Model& m_;
  const BenchOptions& o_;
  Workspace& ws_;
  StateCost cost_;
  int vocab_;
  std::vector<float> logits_;
  std::vector<int> prompt_;
  SequenceState proto_;
  bool have_proto_ = false;
  int proto_next_ = 0;
};

}  // namespace

Result<ModelBench> BenchModel(const Model& model, const std::string& name, const BenchOptions& o) {
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(fmt::format("bench: {}: {}", name, s));
  };
  if (o.threads < 1 || o.gen < 1 || o.max_tokens < 1 || o.batch_context < 0)
    return Errorf("bench: threads, gen and max_tokens must be >= 1 and batch_context >= 0");
  if (o.prompt_lengths.empty() || o.batches.empty()) return Errorf("bench: no prompt lengths or batch sizes");
  ResetPeakRss();
  ModelBench r;
  r.name = name;
  r.family = model.config().family;
  r.context_limit = model.context_limit() == INT_MAX ? 0 : model.context_limit();
  r.weight_bytes = model.WeightBytes();
  const int rows = std::max(o.max_tokens, *std::max_element(o.batches.begin(), o.batches.end()));
  Workspace ws(model, rows, Threads{o.threads});
  r.workspace_bytes = ws.Bytes();
  SUBQ_ASSIGN_OR_RETURN(StateCost cost, MeasureStateCost(model));
  Bencher b(model, o, ws, cost);

  const auto t0 = Clock::now();  // warm-up: a short prompt and a few decode steps, untimed
  {
    const int n = std::max(1, std::min(128, model.context_limit() - 8));
    SequenceState seq;
    int next = 0;
    SUBQ_ASSIGN_OR_RETURN(double t, b.Prefill(n, n + 8, &seq, &next));
    SUBQ_ASSIGN_OR_RETURN(double t2, b.Decode(seq, next, 8));
    (void)t, (void)t2;
  }
  r.warmup_s = Seconds(t0);
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
