// `subq bench --device cuda` (cuda_device.h): the cells of eval/bench.h on a CudaRunner whose slots are
// the bench's sequences, re-made when a cell needs more slots or a longer context; memory is the device's.
#include "apps/cuda_device.h"
#include "engine_cuda/cuda_runner.h"
#include "engine_cuda/host_tensors.h"

namespace subq {
namespace {

class CudaBench : public BenchBackend {
 public:
  CudaBench(std::unique_ptr<cuda::CudaModel> m, int context_limit, int max_rows, size_t memory_limit)
      : model_(std::move(m)), limit_(context_limit), rows_(max_rows), memory_limit_(memory_limit) {}
  const ModelConfig& config() const override { return model_->config(); }
  int context_limit() const override { return limit_; }
  size_t WeightBytes() const override { return model_->WeightBytes(); }
  size_t WorkspaceBytes() const override { return run_ ? run_->WorkspaceBytes() : 0; }
  size_t SequenceBytes(int n) const override { return cuda::CudaRunner::SlotBytes(*model_, n); }
  size_t AvailableBytes() const override {
    if (memory_limit_ > 0) return memory_limit_;
    size_t free = 0, total = 0;
    SUBQ_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    // The current runner's pools are freed before a larger one is made.
    const size_t held = run_ ? size_t(run_->max_slots() + 1) * run_->StateBytesPerSlot() : 0;
    return free + held;
  }
  Status Reserve(int seqs, int cap) override {
    const bool kv = run_ ? run_->has_attention() : true;
    if (!run_ || run_->max_slots() < seqs || (kv && run_->max_context() < cap)) {
      run_.reset();
      run_ = std::make_unique<cuda::CudaRunner>(*model_, seqs, std::max(cap, 1), rows_);
    }
    for (int i = 0; i < seqs; ++i) run_->Reset(i);
    return Status::Ok();
  }
  Status Fresh(int id) override {
    run_->Reset(id);
    return Status::Ok();
  }
  Status Copy(int from, int to) override {
    run_->Copy(from, to);
    return Status::Ok();
  }
  Status Prefill(int id, const int* tokens, int n, int* next) override {
    *next = run_->Prefill(id, tokens, n);
    return Status::Ok();
  }
  Status Step(int B, const int* ids, int* tokens) override {
    next_.resize(B);
    run_->Decode(B, ids, tokens, next_.data());
    for (int b = 0; b < B; ++b) {
      if (next_[b] < 0) return Errorf("bench: the model produced non-finite logits on the GPU");
      tokens[b] = next_[b];
    }
    return Status::Ok();
  }
  size_t StateBytes(int id) const override { return run_->StateBytesUsed(id); }
  size_t StateCapacityBytes(int id) const override { return run_->StateBytesPerSlot(); }

 private:
  std::unique_ptr<cuda::CudaModel> model_;
  int limit_, rows_;
  size_t memory_limit_;
  std::unique_ptr<cuda::CudaRunner> run_;
  std::vector<int> next_;
};

}  // namespace

Result<std::unique_ptr<BenchBackend>> CudaBenchBackend(const LoadedModel& lm, int max_rows, size_t memory_limit) {
  std::string err;
  auto model = cuda::CudaModel::Upload(lm.ckpt->config, cuda::FromStore(lm.ckpt->tensors), &err);
  if (!model) return Status::Error(err);
  return std::unique_ptr<BenchBackend>(std::make_unique<CudaBench>(std::move(model), lm.model->context_limit(),
                                                                   std::max(1, std::min(max_rows, 512)), memory_limit));
}

}  // namespace subq
