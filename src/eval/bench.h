// Throughput benchmark of one model (the measuring logic of `subq bench`): prefill tok/s and time to
// first token per prompt length, decode tok/s after prompts of each length, batched decode (B
// sequences stepping together through the ragged Forward, each with its own SequenceState) per batch
// size, state bytes per sequence, peak RSS. Cells that cannot run are skipped with a reason ("beyond
// context limit", "out of memory") found before anything is allocated.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "util/status.h"

namespace subq {

struct BenchOptions {
  int threads = 1;
  std::vector<int> prompt_lengths = {128, 512, 4096};
  std::vector<int> batches = {1, 8, 32};
  int gen = 128;            // decode steps timed per cell
  int batch_context = 0;    // tokens every sequence holds before the batched decode is timed
  int max_tokens = 512;     // rows per Forward call (prompts are fed in pieces of this many)
  double min_seconds = 0.5; // a cell faster than this is repeated (at most 5 runs) and the median kept
  size_t memory_limit = 0;  // bytes a cell may allocate (0: MemAvailable of /proc/meminfo)
  std::function<void(const std::string&)> progress;  // one line per step (e.g. to stderr)
  std::string device = "cpu";  // where the models ran: "cpu", or the GPU's name (JSON "device")
};

// A measured cell, or the reason it was skipped (skip non-empty, numbers 0).
struct PrefillCell {
  int length = 0;
  std::string skip;
  double tok_s = 0, ttft_s = 0;        // prompt tokens / time; time to the first generated token
  double decode_tok_s = 0;             // decode after the prompt (context `length`)
  std::string decode_skip;             // why the decode after it was skipped (context limit, memory)
  size_t state_bytes = 0, state_capacity_bytes = 0;  // SequenceState::Bytes / CapacityBytes after it
};
struct BatchCell {
  int batch = 0;
  std::string skip;
  double tok_s_per_seq = 0, aggregate_tok_s = 0;
  size_t state_bytes_per_seq = 0, state_capacity_bytes_per_seq = 0;
};

struct ModelBench {
  std::string name;                 // the --model argument
  std::string family;
  int context_limit = 0;            // 0: unlimited (recurrent; null in the JSON)
  size_t weight_bytes = 0;          // Model::WeightBytes: what one decode step reads
  size_t workspace_bytes = 0;
  size_t peak_rss_bytes = 0;        // this model's peak resident set (VmHWM, reset before it)
  double warmup_s = 0;
  std::vector<PrefillCell> prefill; // one per prompt length
  std::vector<BatchCell> batch;     // one per batch size
};

// What the bench drives: the CPU engine (BenchModel(Model)) or another device's runner
// (apps/cuda_device.h). Sequences are numbered 0.. within the last Reserve; next tokens are greedy.
class BenchBackend {
 public:
  virtual ~BenchBackend() = default;
  virtual const ModelConfig& config() const = 0;
  virtual int context_limit() const = 0;  // INT_MAX: unlimited
  virtual size_t WeightBytes() const = 0;     // what one decode step reads
  virtual size_t WorkspaceBytes() const = 0;  // activations and scratch at the last Reserve
  // Bytes one sequence of capacity n tokens allocates, and the bytes there are to allocate.
  virtual size_t SequenceBytes(int n) const = 0;
  virtual size_t AvailableBytes() const = 0;
  // Room for `seqs` sequences of capacity `cap` tokens each, every one empty.
  virtual Status Reserve(int seqs, int cap) = 0;
  virtual Status Fresh(int id) = 0;                   // empties sequence id
  virtual Status Copy(int from, int to) = 0;          // sequence `to` becomes a copy of `from`
  virtual Status Prefill(int id, const int* tokens, int n, int* next) = 0;
  virtual Status Step(int B, const int* ids, int* tokens) = 0;  // one token each; tokens in, next tokens out
  virtual size_t StateBytes(int id) const = 0;          // SequenceState::Bytes of id
  virtual size_t StateCapacityBytes(int id) const = 0;  // SequenceState::CapacityBytes of id
};

// Runs every cell after a warm-up. Errors only for a failing forward pass (not for skipped cells).
Result<ModelBench> BenchModel(BenchBackend& backend, const std::string& name, const BenchOptions& o);
// The CPU engine with o.threads threads and workspaces of o.max_tokens rows (or the largest batch).
Result<ModelBench> BenchModel(const Model& model, const std::string& name, const BenchOptions& o);

// CPU model name, cores, load average, total/available memory.
nlohmann::json MachineInfo();
// Every number of `r` (and the options it ran with).
nlohmann::json BenchJson(const std::vector<ModelBench>& r, const BenchOptions& o);
// The human table of one model.
std::string BenchTable(const ModelBench& r, const BenchOptions& o);
// Two panels: decode tok/s vs context length and aggregate decode tok/s vs batch, a line per model.
Status WriteBenchPng(const std::vector<ModelBench>& r, const BenchOptions& o, const std::string& path);

}  // namespace subq
