#include "serve/backend_cuda.h"

#include <algorithm>

#include "engine_cuda/cuda_runner.h"
#include "engine_cuda/host_tensors.h"

namespace subq::serve {
namespace {

class CudaBackend;

class CudaSeq : public BackendSeq {
 public:
  CudaSeq(CudaBackend* b, int slot) : b_(b), slot(slot) {}
  ~CudaSeq() override;
  int pos() const override;
  int max_context() const override;
  size_t bytes() const override;
  size_t snapshot_bytes() const override;
  CudaBackend* b_;
  const int slot;
};

class CudaSnap : public BackendSnapshot {
 public:
  CudaSnap(cuda::CudaRunner& run, cuda::CudaRunner::SlotSnapshot s) : run_(run), snap(s) {}
  ~CudaSnap() override { run_.Free(snap); }
  size_t bytes() const override { return snap.bytes; }
  int max_context() const override { return run_.max_context(); }
  cuda::CudaRunner& run_;
  cuda::CudaRunner::SlotSnapshot snap;
};

class CudaBackend : public Backend {
 public:
  CudaBackend(std::unique_ptr<cuda::CudaModel> m, const CudaBackendOptions& o)
      : model_(std::move(m)), o_(o), run_(*model_, o.slots, o.max_context, o.max_rows) {
    for (int s = o.slots - 1; s >= 0; --s) free_.push_back(s);
  }
  int vocab() const override { return model_->dims().vocab; }
  int context_limit() const override { return o_.context_limit; }
  int eos_id() const override { return model_->config().eos_id; }
  bool picks_tokens() const override { return true; }
  cuda::CudaRunner& run() { return run_; }

  Result<std::unique_ptr<BackendSeq>> NewSequence(int max_context) override {
    if (run_.has_attention() && max_context > run_.max_context())
      return Errorf("a sequence of {} tokens exceeds the GPU slots' {}", max_context, run_.max_context());
    if (free_.empty()) return Errorf("all {} GPU sequence slots are in use", o_.slots);
    const int slot = free_.back();
    free_.pop_back();
    run_.Reset(slot);
    return std::unique_ptr<BackendSeq>(std::make_unique<CudaSeq>(this, slot));
  }
  Result<std::unique_ptr<BackendSeq>> Copy(const BackendSeq& s) override {
    auto to = NewSequence(s.max_context());
    if (!to.ok()) return to.status();
    run_.Copy(static_cast<const CudaSeq&>(s).slot, static_cast<CudaSeq&>(**to).slot);
    return to;
  }
  void Release(int slot) { free_.push_back(slot); }
  void SetSampler(BackendSeq& s, const SamplerConfig& sc) override { run_.SetSampler(Slot(s), sc); }
  std::unique_ptr<BackendSnapshot> Snapshot(const BackendSeq& s) override {
    auto snap = run_.Snapshot(Slot(s));
    if (snap.data == nullptr) return nullptr;
    return std::make_unique<CudaSnap>(run_, snap);
  }
  void Restore(const BackendSnapshot& snap, BackendSeq& s) override {
    run_.Restore(static_cast<const CudaSnap&>(snap).snap, Slot(s));
  }

  Status Forward(std::vector<Feed>& feeds) override {
    const int V = vocab();
    std::vector<Feed*> dec;
    std::vector<int> slots, toks;
    bool dec_logits = false;
    for (Feed& f : feeds) {
      const int slot = Slot(*f.seq);
      for (int i = 0; i < f.n; ++i)
        if (f.tokens[i] < 0 || f.tokens[i] >= V) return Errorf("token id {} outside the vocabulary", f.tokens[i]);
      if (run_.has_attention() && run_.pos(slot) + f.n > run_.max_context())
        return Errorf("{} tokens at position {} exceed the GPU slot's {}", f.n, run_.pos(slot), run_.max_context());
      if (f.n == 1 && !f.all_logits) {  // batched below
        dec.push_back(&f), slots.push_back(slot), toks.push_back(f.tokens[0]);
        dec_logits |= f.logits != nullptr;
      } else if (f.all_logits) {
        run_.PrefillAllLogits(slot, f.tokens, f.n, f.logits);
      } else {
        f.next = run_.Prefill(slot, f.tokens, f.n, f.logits ? &lg_ : nullptr);
        if (f.logits) std::copy(lg_.begin(), lg_.begin() + V, f.logits);
      }
    }
    if (dec.empty()) return Status::Ok();
    std::vector<int> next(dec.size());
    run_.Decode(static_cast<int>(dec.size()), slots.data(), toks.data(), next.data(), dec_logits ? &lg_ : nullptr);
    for (size_t r = 0; r < dec.size(); ++r) {
      dec[r]->next = next[r];
      if (dec[r]->logits) std::copy_n(lg_.begin() + r * V, V, dec[r]->logits);
    }
    return Status::Ok();
  }

 private:
  static int Slot(const BackendSeq& s) { return static_cast<const CudaSeq&>(s).slot; }
  std::unique_ptr<cuda::CudaModel> model_;
  CudaBackendOptions o_;
  cuda::CudaRunner run_;
  std::vector<int> free_;
  std::vector<float> lg_;
};

CudaSeq::~CudaSeq() { b_->Release(slot); }
int CudaSeq::pos() const { return b_->run().pos(slot); }
int CudaSeq::max_context() const { return b_->run().max_context(); }
size_t CudaSeq::bytes() const { return b_->run().StateBytesPerSlot(); }
size_t CudaSeq::snapshot_bytes() const { return b_->run().StateBytesUsed(slot); }

}  // namespace

Result<std::unique_ptr<Backend>> MakeCudaBackend(const ModelConfig& cfg, const TensorStore& tensors,
                                                 const CudaBackendOptions& o, size_t* cache_bytes) {
  std::string err;
  auto model = cuda::CudaModel::Upload(cfg, cuda::FromStore(tensors), &err);
  if (!model) return Status::Error(err);
  const size_t need = cuda::CudaRunner::SlotBytes(*model, o.max_context) * size_t(o.slots + 1);
  size_t free_b = 0, total_b = 0;
  SUBQ_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (need > free_b)
    return Errorf("{} GPU slots of {} tokens need {:.1f} GiB of state, the device has {:.1f} GiB free "
                  "(lower --max-batch or --max-context)", o.slots + 1, o.max_context, need / 1073741824.0,
                  free_b / 1073741824.0);
  auto b = std::make_unique<CudaBackend>(std::move(model), o);
  SUBQ_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  *cache_bytes = std::min(*cache_bytes, free_b / 2);
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace subq::serve
