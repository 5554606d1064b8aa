// The CPU serve backend (backend.h): sequences are SequenceStates, a step is one ragged Model::Forward,
// snapshots are state copies.
#include "model/workspace.h"
#include "serve/backend.h"

namespace subq::serve {
namespace {

class CpuSeq : public BackendSeq {
 public:
  explicit CpuSeq(SequenceState s) : state(std::move(s)) {}
  int pos() const override { return state.pos; }
  int max_context() const override { return state.max_context; }
  size_t bytes() const override { return state.CapacityBytes(); }
  size_t snapshot_bytes() const override { return state.CapacityBytes(); }
  SequenceState state;
};

class CpuSnapshot : public BackendSnapshot {
 public:
  explicit CpuSnapshot(SequenceState s) : state(std::move(s)) {}
  size_t bytes() const override { return state.CapacityBytes(); }
  int max_context() const override { return state.max_context; }
  SequenceState state;
};

class CpuBackend : public Backend {
 public:
  CpuBackend(const Model& m, int max_rows, Threads threads) : m_(m), ws_(m, max_rows, threads) {}
  int vocab() const override { return m_.config().vocab_size; }
  int context_limit() const override { return m_.context_limit(); }
  int eos_id() const override { return m_.config().eos_id; }
  Result<std::unique_ptr<BackendSeq>> NewSequence(int max_context) override {
    auto st = m_.NewSequence(max_context);
    if (!st.ok()) return st.status();
    return std::unique_ptr<BackendSeq>(std::make_unique<CpuSeq>(std::move(*st)));
  }
  Result<std::unique_ptr<BackendSeq>> Copy(const BackendSeq& s) override {
    return std::unique_ptr<BackendSeq>(std::make_unique<CpuSeq>(static_cast<const CpuSeq&>(s).state.Copy()));
  }
  std::unique_ptr<BackendSnapshot> Snapshot(const BackendSeq& s) override {
    return std::make_unique<CpuSnapshot>(static_cast<const CpuSeq&>(s).state.Snapshot());
  }
  void Restore(const BackendSnapshot& snap, BackendSeq& s) override {
    static_cast<CpuSeq&>(s).state.Restore(static_cast<const CpuSnapshot&>(snap).state);
  }
  Status Forward(std::vector<Feed>& feeds) override {
    std::vector<SeqInput> batch;
    for (Feed& f : feeds) {
      if (f.logits == nullptr) return Errorf("cpu backend: a feed without a logits buffer");
      batch.push_back(SeqInput{f.tokens, f.n, &static_cast<CpuSeq*>(f.seq)->state, f.logits, f.all_logits});
    }
    return batch.empty() ? Status::Ok() : m_.Forward(batch, ws_);
  }

 private:
  const Model& m_;
  Workspace ws_;
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(const Model& model, int max_rows, Threads threads) {
  return std::make_unique<CpuBackend>(model, max_rows, threads);
}

}  // namespace subq::serve
