// Softmax attention mixer (SPEC section 1). Mixing matrix = causal attention probabilities.
#include "mixers/attention.h"

#include <cmath>
#include <cstring>
#include <numbers>

#include "mixers/mixers.h"
#include "model/schema.h"
#include "ops/ops.h"

namespace subq {

std::vector<float> RopeInvFreq(const AttentionConfig& a) {
  const int half = a.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(a.rope_theta), -2.0 * i / a.head_dim);
    if (a.rope_scaling.type == "llama3") {
      const auto& s = a.rope_scaling;
      const double orig = s.original_max_position_embeddings;
      const double low_wavelen = orig / s.low_freq_factor, high_wavelen = orig / s.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_wavelen) {
        const double sm = (orig / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - sm) * f / s.factor + sm * f;
      }
    }
    inv[i] = static_cast<float>(f);
  }
  return inv;
}

KvCache::KvCache(int n_kv_heads, int head_dim, int capacity)
    : n_kv_(n_kv_heads), hd_(head_dim), cap_(capacity),
      k_(static_cast<size_t>(capacity) * n_kv_heads * head_dim),
      v_(static_cast<size_t>(capacity) * n_kv_heads * head_dim) {}

size_t AttentionCore::ScratchFloats(int n_threads) const {
  return ops::AttentionScratchFloats(hd) * n_threads + Arena::kAlign;
}

Tensor AttentionCore::Probabilities(float* q, float* k, int L) const {
  for (int t = 0; t < L; ++t) {
    ops::Rope(q + static_cast<size_t>(t) * n_heads * hd, n_heads, hd, t, inv_freq.data(), interleaved);
    ops::Rope(k + static_cast<size_t>(t) * n_kv_heads * hd, n_kv_heads, hd, t, inv_freq.data(), interleaved);
  }
  return AttentionProbabilities(q, k, L, n_heads, n_kv_heads, hd);
}

Tensor AttentionProbabilities(const float* q, const float* k, int L, int n_heads, int n_kv, int hd) {
  Tensor probs({n_heads, L, L});
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int h = 0; h < n_heads; ++h) {
    float* P = probs.ptr() + static_cast<size_t>(h) * L * L;  // [L, L]
    // P = q_h [L, hd] k_kh [L, hd]^T * scale, then a causal softmax per row.
    ops::Gemm(false, true, L, L, hd, scale, q + h * hd, n_heads * hd, k + (h / group) * hd, n_kv * hd, 0.0f, P, L);
    for (int t = 0; t < L; ++t) {
      float* row = P + static_cast<size_t>(t) * L;
      ops::SoftmaxInPlace(row, t + 1);
      for (int j = t + 1; j < L; ++j) row[j] = 0.0f;
    }
  }
  return probs;
}

namespace {

class Attention : public Mixer {
 public:
  using Mixer::Forward;
  using Mixer::NewState;
  explicit Attention(const ModelConfig& cfg) : a_(cfg.attn), dim_(cfg.dim) {
    core_ = AttentionCore{a_.n_heads, a_.n_kv_heads, a_.head_dim, a_.rope_interleaved, RopeInvFreq(cfg.attn)};
  }

  std::unique_ptr<LayerState> NewState(int max_context) const override {
    return std::make_unique<KvCache>(a_.n_kv_heads, a_.head_dim, max_context);
  }

  size_t ScratchFloats(int T, int n_threads) const override {
    const size_t qd = a_.n_heads * a_.head_dim, kvd = a_.n_kv_heads * a_.head_dim;
    return static_cast<size_t>(T) * (2 * qd + 2 * kvd) + 4 * Arena::kAlign + core_.ScratchFloats(n_threads);
  }

  void Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* out) const override {
    const int qd = a_.n_heads * a_.head_dim, kvd = a_.n_kv_heads * a_.head_dim;
    float* q = ctx.arena->Take(static_cast<size_t>(T) * qd);    // [T, H*hd]
    float* k = ctx.arena->Take(static_cast<size_t>(T) * kvd);   // [T, KV*hd]
    float* v = ctx.arena->Take(static_cast<size_t>(T) * kvd);   // [T, KV*hd]
    float* att = ctx.arena->Take(static_cast<size_t>(T) * qd);  // [T, H*hd]
    ops::Linear(ctx.threads, u, T, wq_, q);
    ops::Linear(ctx.threads, u, T, wk_, k);
    ops::Linear(ctx.threads, u, T, wv_, v);
    core_.Run(q, k, v, seqs, ctx, [](const SeqSlice& s) -> KvCache& { return static_cast<KvCache&>(*s.state); }, att);
    if (ctx.zeroed_heads != nullptr)  // head ablation: the head adds nothing through o_proj
      for (int h = 0; h < a_.n_heads; ++h)
        if (ctx.zeroed_heads[h] != 0)
          for (int t = 0; t < T; ++t) std::memset(att + static_cast<size_t>(t) * qd + h * a_.head_dim, 0,
                                                  a_.head_dim * sizeof(float));
    ops::Linear(ctx.threads, att, T, wo_, out);  // [T, dim]
  }

  Tensor Materialize(const float* u, int L) const override {
    const int qd = a_.n_heads * a_.head_dim, kvd = a_.n_kv_heads * a_.head_dim;
    std::vector<float> q(static_cast<size_t>(L) * qd), k(static_cast<size_t>(L) * kvd);
    const Threads th = Threads::Default();
    ops::Linear(th, u, L, wq_, q.data());
    ops::Linear(th, u, L, wk_, k.data());
    return core_.Probabilities(q.data(), k.data(), L);
  }

  int num_heads() const override { return a_.n_heads; }
  size_t WeightBytes() const override { return wq_.Bytes() + wk_.Bytes() + wv_.Bytes() + wo_.Bytes(); }

  AttentionConfig a_;
  int dim_;
  AttentionCore core_;
  ops::Weight wq_, wk_, wv_, wo_;
};

}  // namespace

Result<std::unique_ptr<Mixer>> MakeAttention(const ModelConfig& cfg, int layer, const TensorStore& store,
                                             const std::string& prefix) {
  const AttentionConfig& a = cfg.attn;
  if (a.n_heads <= 0 || a.n_kv_heads <= 0 || a.head_dim <= 0 || a.head_dim % 2 != 0)
    return Errorf("layer {}: bad attention config (heads {}, kv heads {}, head_dim {})", layer, a.n_heads,
                  a.n_kv_heads, a.head_dim);
  if (a.n_heads % a.n_kv_heads != 0)
    return Errorf("layer {}: {} attention heads are not a multiple of {} kv heads", layer, a.n_heads, a.n_kv_heads);
  auto m = std::make_unique<Attention>(cfg);
  // q, k, v, o: names and shapes from the schema's table (model/schema.h), in its order.
  const std::vector<TensorSpec> specs = MixerKindTensors(cfg, MixerKind::kAttention);
  ops::Weight* dst[] = {&m->wq_, &m->wk_, &m->wv_, &m->wo_};
  if (specs.size() != std::size(dst)) return Errorf("internal error: attention table has {} tensors", specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    SUBQ_ASSIGN_OR_RETURN(*dst[i], store.LoadWeight(prefix + specs[i].name, specs[i].shape[0], specs[i].shape[1]));
  }
  return std::unique_ptr<Mixer>(std::move(m));
}

}  // namespace subq
