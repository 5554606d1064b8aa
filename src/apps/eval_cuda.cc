// `subq eval --device cuda` (cuda_device.h): the sliding-window scoring of eval/perplexity.h on a
// CudaRunner with one slot; every fed token's logits come back to the host, where the CPU path's code
// scores them.
#include "apps/cuda_device.h"
#include "engine_cuda/cuda_runner.h"
#include "engine_cuda/host_tensors.h"

namespace subq {
namespace {

class CudaLogits : public LogitsSource {
 public:
  CudaLogits(std::unique_ptr<cuda::CudaModel> m, const ModelConfig& cfg, int context_limit, int window, int rows)
      : model_(std::move(m)), cfg_(cfg), limit_(context_limit), run_(*model_, 1, window, rows) {}
  int vocab() const override { return cfg_.vocab_size; }
  int context_limit() const override { return limit_; }
  bool has_attention() const override { return run_.has_attention(); }
  Status Begin(int context) override {
    if (run_.has_attention() && context > run_.max_context())
      return Errorf("eval --device cuda: a window of {} tokens exceeds the runner's {}", context, run_.max_context());
    run_.Reset(0);
    return Status::Ok();
  }
  Status Feed(const int* tokens, int n, float* logits) override {
    if (run_.has_attention() && run_.pos(0) + n > run_.max_context())
      return Errorf("eval --device cuda: {} tokens at position {} exceed the window", n, run_.pos(0));
    for (int i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
        return Errorf("eval: token id {} outside the vocabulary (0..{})", tokens[i], cfg_.vocab_size - 1);
    run_.PrefillAllLogits(0, tokens, n, logits);
    return Status::Ok();
  }

 private:
  std::unique_ptr<cuda::CudaModel> model_;
  ModelConfig cfg_;
  int limit_;
  cuda::CudaRunner run_;
};

}  // namespace

Result<std::unique_ptr<LogitsSource>> CudaLogitsSource(const LoadedModel& lm, int window, int rows) {
  std::string err;
  auto model = cuda::CudaModel::Upload(lm.ckpt->config, cuda::FromStore(lm.ckpt->tensors), &err);
  if (!model) return Status::Error(err);
  return std::unique_ptr<LogitsSource>(std::make_unique<CudaLogits>(
      std::move(model), lm.ckpt->config, lm.model->context_limit(), window, std::max(1, std::min(rows, 512))));
}

}  // namespace subq
