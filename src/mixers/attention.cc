// Softmax attention mixer (SPEC section 1). Mixing matrix = causal attention probabilities.
#include "mixers/attention.h"

#include <cmath>
#include <numbers>

#include "mixers/mixers.h"
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

void ApplyRope(float* x, int n_heads, int hd, int pos, const std::vector<float>& inv_freq, bool interleaved) {
  const int half = hd / 2;
  for (int i = 0; i < half; ++i) {
    const float ang = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(ang), s = std::sin(ang);
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + static_cast<size_t>(h) * hd;
      const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

void KvCache::Reserve(int n) {
  if (len_ + n <= cap_) return;
  int cap = std::max(64, cap_);
  while (cap < len_ + n) cap *= 2;
  k.resize(static_cast<size_t>(cap) * n_kv_ * hd_);
  v.resize(static_cast<size_t>(cap) * n_kv_ * hd_);
  cap_ = cap;
}

void AttendCausal(const float* q, int L, int n_heads, int n_kv, int hd, KvCache& cache, float* out, float* probs) {
  const int T = cache.len() + L;  // keys available to the last query
  const int p0 = cache.len();
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int kv_stride = n_kv * hd;
  std::vector<float> scores(static_cast<size_t>(L) * T);  // [L, T]
  for (int h = 0; h < n_heads; ++h) {
    const int kh = h / group;
    const float* K = cache.k_at(0) + kh * hd;  // rows of stride kv_stride
    const float* V = cache.v_at(0) + kh * hd;
    // scores[L, T] = q_h [L, hd] K_kh[T, hd]^T * scale
    ops::Gemm(false, true, L, T, hd, scale, q + h * hd, n_heads * hd, K, kv_stride, 0.0f, scores.data(), T);
    for (int t = 0; t < L; ++t) {
      float* row = scores.data() + static_cast<size_t>(t) * T;
      const int n = p0 + t + 1;  // causal: keys 0..p0+t
      ops::SoftmaxInPlace(row, n);
      for (int j = n; j < T; ++j) row[j] = 0.0f;
      if (probs != nullptr) std::copy(row, row + T, probs + (static_cast<size_t>(h) * L + t) * T);
    }
    // out_h[L, hd] = scores[L, T] V[T, hd]
    ops::Gemm(false, false, L, hd, T, 1.0f, scores.data(), T, V, kv_stride, 0.0f, out + h * hd, n_heads * hd);
  }
}

namespace {

class Attention : public Mixer {
 public:
  Attention(const ModelConfig& cfg) : a_(cfg.attn), dim_(cfg.dim), inv_freq_(RopeInvFreq(cfg.attn)) {}

  std::unique_ptr<LayerState> NewState() const override {
    return std::make_unique<KvCache>(a_.n_kv_heads, a_.head_dim);
  }

  void Forward(const float* u, int L, int pos, LayerState& state, float* out) override {
    auto& cache = static_cast<KvCache&>(state);
    const int qd = a_.n_heads * a_.head_dim, kvd = a_.n_kv_heads * a_.head_dim;
    q_.resize(static_cast<size_t>(L) * qd);
    att_.resize(static_cast<size_t>(L) * qd);
    cache.Reserve(L);
    float* k = cache.k_at(cache.len());  // new keys/values go straight into the cache
    float* v = cache.v_at(cache.len());
    ops::Linear(u, wq_.ptr(), q_.data(), L, dim_, qd);  // [L, H*hd]
    ops::Linear(u, wk_.ptr(), k, L, dim_, kvd);          // [L, KV*hd]
    ops::Linear(u, wv_.ptr(), v, L, dim_, kvd);          // [L, KV*hd]
    for (int t = 0; t < L; ++t) {
      ApplyRope(q_.data() + static_cast<size_t>(t) * qd, a_.n_heads, a_.head_dim, pos + t, inv_freq_,
                a_.rope_interleaved);
      ApplyRope(k + static_cast<size_t>(t) * kvd, a_.n_kv_heads, a_.head_dim, pos + t, inv_freq_, a_.rope_interleaved);
    }
    AttendCausal(q_.data(), L, a_.n_heads, a_.n_kv_heads, a_.head_dim, cache, att_.data());
    cache.Advance(L);
    ops::Linear(att_.data(), wo_.ptr(), out, L, qd, dim_);  // [L, dim]
  }

  Tensor Materialize(const float* u, int L) const override {
    auto st = NewState();
    auto& cache = static_cast<KvCache&>(*st);
    Tensor probs({a_.n_heads, L, L});
    const int qd = a_.n_heads * a_.head_dim, kvd = a_.n_kv_heads * a_.head_dim;
    std::vector<float> q(static_cast<size_t>(L) * qd), att(static_cast<size_t>(L) * qd);
    cache.Reserve(L);
    ops::Linear(u, wq_.ptr(), q.data(), L, dim_, qd);
    ops::Linear(u, wk_.ptr(), cache.k_at(0), L, dim_, kvd);
    ops::Linear(u, wv_.ptr(), cache.v_at(0), L, dim_, kvd);
    for (int t = 0; t < L; ++t) {
      ApplyRope(q.data() + static_cast<size_t>(t) * qd, a_.n_heads, a_.head_dim, t, inv_freq_, a_.rope_interleaved);
      ApplyRope(cache.k_at(t), a_.n_kv_heads, a_.head_dim, t, inv_freq_, a_.rope_interleaved);
    }
    AttendCausal(q.data(), L, a_.n_heads, a_.n_kv_heads, a_.head_dim, cache, att.data(), probs.ptr());
    return probs;
  }

  int num_heads() const override { return a_.n_heads; }

  AttentionConfig a_;
  int dim_;
  std::vector<float> inv_freq_;
  Tensor wq_, wk_, wv_, wo_;
  std::vector<float> q_, att_;
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
  const int64_t qd = a.n_heads * a.head_dim, kvd = a.n_kv_heads * a.head_dim, d = cfg.dim;
  SUBQ_ASSIGN_OR_RETURN(m->wq_, store.Load(prefix + "q_proj.weight", {qd, d}));
  SUBQ_ASSIGN_OR_RETURN(m->wk_, store.Load(prefix + "k_proj.weight", {kvd, d}));
  SUBQ_ASSIGN_OR_RETURN(m->wv_, store.Load(prefix + "v_proj.weight", {kvd, d}));
  SUBQ_ASSIGN_OR_RETURN(m->wo_, store.Load(prefix + "o_proj.weight", {d, qd}));
  return std::unique_ptr<Mixer>(std::move(m));
}

}  // namespace subq
