// Held-out documents and a torch LogitsSource for the engine's perplexity (heldout.h).
#include "train/heldout.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "eval/text_data.h"
#include "train/data.h"

namespace subq::train {
namespace {

class TorchSource : public LogitsSource {
 public:
  TorchSource(std::function<torch::Tensor(const torch::Tensor&)> f, int vocab, int limit, bool attn, torch::Device d)
      : f_(std::move(f)), vocab_(vocab), limit_(limit), attn_(attn), dev_(d) {}
  int vocab() const override { return vocab_; }
  int context_limit() const override { return limit_; }
  bool has_attention() const override { return attn_; }
  Status Begin(int context) override {
    ids_.clear();
    return Status::Ok();
  }
  Status Feed(const int* tokens, int n, float* logits) override {
    ids_.insert(ids_.end(), tokens, tokens + n);
    torch::NoGradGuard ng;
    auto x = torch::tensor(ids_, torch::kInt64).view({1, -1}).to(dev_);             // [1, L]
    auto lg = f_(x)[0].narrow(0, static_cast<int64_t>(ids_.size()) - n, n);          // [n, V]
    lg = lg.to(torch::kCPU, torch::kFloat32).contiguous();
    if (lg.size(1) != vocab_) return Errorf("logits have {} columns, vocab is {}", lg.size(1), vocab_);
    std::memcpy(logits, lg.data_ptr<float>(), sizeof(float) * n * vocab_);
    return Status::Ok();
  }

 private:
  std::function<torch::Tensor(const torch::Tensor&)> f_;
  int vocab_, limit_;
  bool attn_;
  torch::Device dev_;
  std::vector<int64_t> ids_;
};

}  // namespace

std::unique_ptr<LogitsSource> TorchLogits(std::function<torch::Tensor(const torch::Tensor&)> logits, int vocab,
                                          int context_limit, bool has_attention, const torch::Device& dev) {
  return std::make_unique<TorchSource>(std::move(logits), vocab, context_limit, has_attention, dev);
}

Result<HeldOutSet> WriteHeldOut(const std::string& text, const std::string& separator, const Tokenizer& tok,
                                int64_t max_tokens, int max_window, const std::string& path) {
  const std::vector<std::string> docs = SplitDocuments(text, separator);
  std::string out;
  int64_t n = 0, k = 0;
  for (const std::string& d : docs) {
    if (n > max_tokens) break;
    if (d.find("<|endoftext|>") != std::string::npos) continue;  // would split differently when read back
    out += d + "\n<|endoftext|>\n";
    n += static_cast<int64_t>(tok.Encode(d, /*add_bos=*/true).size());
    ++k;
  }
  if (k == 0) return Errorf("{}: no held-out document to score", path);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f || !(f << out) || !f.flush()) return Errorf("{}: cannot write the held-out documents", path);
  }
  HeldOutSet h;
  SUBQ_ASSIGN_OR_RETURN(h.tokens, TokenizeTextFile(path, tok));
  h.docs = k;
  h.window = std::max(2, std::min(512, max_window));
  h.stride = std::max(1, h.window / 2);
  return h;
}

}  // namespace subq::train
