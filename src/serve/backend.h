// The model executor the one scheduler (engine.h) drives: the CPU engine (MakeCpuBackend, the ragged
// batched Model::Forward) or the CUDA runner (backend_cuda.h: slots of device state pools, decode under CUDA
// graphs, next tokens picked on the device). Sequences and state snapshots are opaque handles owned by
// the scheduler; a snapshot restores exactly (the next token sees the state the snapshot saw), which is
// what the prefix cache and the rollback of speculative decoding rely on.
#pragma once
#include <memory>
#include <vector>

#include "model/model.h"
#include "model/sampler.h"
#include "util/status.h"

namespace subq::serve {

// One sequence's state inside a backend (CPU: a SequenceState; CUDA: a slot of the runner).
class BackendSeq {
 public:
  virtual ~BackendSeq() = default;
  virtual int pos() const = 0;          // tokens consumed so far
  virtual int max_context() const = 0;  // tokens it may hold
  virtual size_t bytes() const = 0;     // state bytes it holds (capacity, as /metrics reports)
  virtual size_t snapshot_bytes() const = 0;  // bytes a Snapshot of it takes now
};

class BackendSnapshot {
 public:
  virtual ~BackendSnapshot() = default;
  virtual size_t bytes() const = 0;
  virtual int max_context() const = 0;  // of the sequence it was taken from
};

// One sequence's part of a batched step: feed tokens[0, n); either logits come back to the host (rows of
// `vocab`: every fed token's when all_logits, else the last one's), or, when logits is null (only where
// picks_tokens()), the backend chooses the next token itself with the sequence's sampler into `next`
// (-1: the logits were not finite).
struct Feed {
  BackendSeq* seq = nullptr;
  const int* tokens = nullptr;
  int n = 0;
  float* logits = nullptr;
  bool all_logits = false;
  int next = -1;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual int vocab() const = 0;
  virtual int context_limit() const = 0;
  virtual int eos_id() const = 0;
  // True when Forward can pick next tokens on its side (Feed::logits == nullptr).
  virtual bool picks_tokens() const { return false; }
  virtual Result<std::unique_ptr<BackendSeq>> NewSequence(int max_context) = 0;
  // A new sequence whose state is a copy of s (n > 1 choices after their shared prefill).
  virtual Result<std::unique_ptr<BackendSeq>> Copy(const BackendSeq& s) = 0;
  // How the backend picks s's next tokens when it does (picks_tokens()).
  virtual void SetSampler(BackendSeq& s, const SamplerConfig& sc) {}
  // nullptr when the memory for it is exhausted (the caller then goes without).
  virtual std::unique_ptr<BackendSnapshot> Snapshot(const BackendSeq& s) = 0;
  virtual void Restore(const BackendSnapshot& snap, BackendSeq& s) = 0;
  virtual Status Forward(std::vector<Feed>& feeds) = 0;
};

// The CPU engine: Model::Forward over a workspace of max_rows rows.
std::unique_ptr<Backend> MakeCpuBackend(const Model& model, int max_rows, Threads threads);

}  // namespace subq::serve
