// Upload (or random generation) of a model's weights onto the GPU (see cuda_model.h).
#include "engine_cuda/cuda_model.h"

#include <cmath>
#include <cstdio>
#include <numbers>

namespace subq::cuda {
namespace {

struct Keys {
  std::string embed, final_norm, lm_head = "lm_head.weight", prefix, in_norm, mlp_norm, attention, recurrent;
};

std::string LayerPrefix(const std::string& fmt, int i) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), fmt.c_str(), i);
  return buf;
}

// Same key names as model/families.cc.
std::string KeysFor(const ModelConfig& c, const HostTensors* src, Keys* k) {
  if (c.family == "llama") {
    *k = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.layers.%d.",
          "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.", "mixer."};
  } else if (c.family == "mamba2") {
    const bool plural = src != nullptr && src->has("backbone.embeddings.weight");
    *k = {plural ? "backbone.embeddings.weight" : "backbone.embedding.weight", "backbone.norm_f.weight",
          "lm_head.weight", "backbone.layers.%d.", "norm.weight", "norm2.weight", "mixer.", "mixer."};
  } else if (c.family == "llamba") {
    *k = {"backbone.embedding.weight", "backbone.final_layernorm.weight", "lm_head.weight", "backbone.layers.%d.",
          "input_layernorm.weight", "post_attention_layernorm.weight", "mixer.", "mixer."};
  } else {
    return "the CUDA backend does not run model family '" + c.family + "' (llama, mamba2, llamba)";
  }
  return "";
}

// RoPE inverse frequencies with llama3 scaling (as mixers/attention.cc RopeInvFreq).
std::vector<float> InvFreq(const AttentionConfig& a) {
  const int half = a.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(a.rope_theta), -2.0 * i / a.head_dim);
    if (a.rope_scaling.type == "llama3") {
      const auto& s = a.rope_scaling;
      const double orig = s.original_max_position_embeddings;
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > orig / s.low_freq_factor) {
        f /= s.factor;
      } else if (wavelen >= orig / s.high_freq_factor) {
        const double sm = (orig / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - sm) * f / s.factor + sm * f;
      }
    }
    inv[i] = static_cast<float>(f);
  }
  return inv;
}

}  // namespace

template <typename T>
T* CudaModel::Alloc(size_t n) {
  void* p = nullptr;
  SUBQ_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
  allocs_.push_back(p);
  bytes_ += n * sizeof(T);
  return static_cast<T*>(p);
}

CudaModel::~CudaModel() {
  for (void* p : allocs_) cudaFree(p);
}

bf16* CudaModel::Matrix(const HostTensors* src, const std::vector<std::string>& names,
                        const std::vector<int64_t>& rows, int64_t cols, uint64_t seed, std::string* err) {
  int64_t total = 0;
  for (int64_t r : rows) total += r;
  bf16* d = Alloc<bf16>(static_cast<size_t>(total) * cols);
  if (src == nullptr) {
    const float a = 1.0f / std::sqrt(static_cast<float>(cols));
    FillUniform(nullptr, d, static_cast<size_t>(total) * cols, seed, -a, a);
    return d;
  }
  std::vector<bf16> host(static_cast<size_t>(total) * cols);
  size_t off = 0;
  std::vector<float> f;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string e = src->load(names[i], {rows[i], cols}, &f);
    if (!e.empty()) {
      *err = e;
      return nullptr;
    }
    for (float v : f) host[off++] = __float2bfloat16(v);
  }
  SUBQ_CUDA_CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(bf16), cudaMemcpyHostToDevice));
  return d;
}

float* CudaModel::Vector(const HostTensors* src, const std::string& name, const std::vector<int64_t>& shape,
                         float lo, float hi, uint64_t seed, std::string* err, bool optional) {
  size_t n = 1;
  for (int64_t s : shape) n *= static_cast<size_t>(s);
  if (src != nullptr && optional && !src->has(name)) return nullptr;
  float* d = Alloc<float>(n);
  if (src == nullptr) {
    FillUniform(nullptr, d, n, seed, lo, hi);
    return d;
  }
  std::vector<float> f;
  const std::string e = src->load(name, shape, &f);
  if (!e.empty()) {
    *err = e;
    return nullptr;
  }
  SUBQ_CUDA_CHECK(cudaMemcpy(d, f.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

std::string CudaModel::Build(const ModelConfig& c, const HostTensors* src, uint64_t seed) {
  cfg_ = c;
  Keys k;
  if (std::string e = KeysFor(c, src, &k); !e.empty()) return e;
  d_.dim = c.dim, d_.vocab = c.vocab_size, d_.hidden = c.hidden_dim;
  d_.H = c.attn.n_heads, d_.KV = c.attn.n_kv_heads, d_.hd = c.attn.head_dim;
  bool m2 = false, dm2 = false;
  for (const LayerConfig& l : c.layers) {
    if (!l.attention_heads.empty()) return "the CUDA backend does not run head-level hybrid layers yet";
    m2 |= l.mixer == MixerKind::kMamba2;
    dm2 |= l.mixer == MixerKind::kDiscreteMamba2;
    if (l.mixer == MixerKind::kMamba3 || l.mixer == MixerKind::kGatedDeltaNet)
      return std::string("the CUDA backend has no ") +
             (l.mixer == MixerKind::kMamba3 ? "Mamba-3" : "Gated DeltaNet") + " kernels yet";
  }
  if (m2 && dm2) return "the CUDA backend runs one kind of SSD mixer per model";
  if (m2) {
    const Mamba2Config& m = c.mamba2;
    d_.ssm_H = m.n_heads, d_.ssm_P = m.head_dim, d_.ssm_N = m.state_size, d_.ssm_G = m.n_groups, d_.K = m.conv_kernel;
    d_.d_inner = m.d_inner(), d_.conv_dim = d_.d_inner + 2 * m.n_groups * m.state_size;
    d_.proj_rows = 2 * d_.d_inner + 2 * m.n_groups * m.state_size + m.n_heads;
  } else if (dm2) {
    const DiscreteMamba2Config& m = c.dm2;
    d_.ssm_H = m.n_v_heads, d_.ssm_P = m.head_dim, d_.ssm_N = m.d_state, d_.ssm_G = m.n_qk_heads, d_.K = m.conv_kernel;
    d_.d_inner = m.d_inner(), d_.conv_dim = d_.d_inner + 2 * m.n_qk_heads * m.d_state;
    d_.proj_rows = d_.conv_dim + d_.d_inner + m.n_v_heads;
  }
  if ((m2 || dm2) && (d_.ssm_N % 4 != 0 || d_.d_inner % 4 != 0 || d_.K > 8))
    return "the CUDA SSD kernels need state size and d_inner divisible by 4 and conv width <= 8";
  std::string err;
  uint64_t sd = seed;
  const int64_t D = c.dim;
  embed_ = Matrix(src, {k.embed}, {c.vocab_size}, D, ++sd, &err);
  final_norm_ = Vector(src, k.final_norm, {D}, 1.0f, 1.0f, ++sd, &err);
  const bool own_head = !c.tie_embeddings && (src == nullptr || src->has(k.lm_head));
  lm_head_ = own_head ? Matrix(src, {k.lm_head}, {c.vocab_size}, D, ++sd, &err) : embed_;
  if (c.attn.head_dim > 0) {
    const std::vector<float> inv = InvFreq(c.attn);
    inv_freq_ = Alloc<float>(inv.size());
    SUBQ_CUDA_CHECK(cudaMemcpy(inv_freq_, inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  for (int i = 0; i < c.n_layers && err.empty(); ++i) {
    const std::string p = LayerPrefix(k.prefix, i);
    DeviceLayer L;
    L.kind = c.layers[i].mixer;
    L.in_norm = Vector(src, p + k.in_norm, {D}, 1.0f, 1.0f, ++sd, &err);
    if (c.hidden_dim > 0) {
      const int64_t Hd = c.hidden_dim;
      L.mlp_norm = Vector(src, p + k.mlp_norm, {D}, 1.0f, 1.0f, ++sd, &err);
      L.w_gate_up = Matrix(src, {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"}, {Hd, Hd}, D, ++sd, &err);
      L.w_down = Matrix(src, {p + "mlp.down_proj.weight"}, {D}, Hd, ++sd, &err);
    }
    if (L.kind == MixerKind::kAttention) {
      const std::string a = p + k.attention;
      const int64_t q = int64_t(d_.H) * d_.hd, kv = int64_t(d_.KV) * d_.hd;
      L.wqkv = Matrix(src, {a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"}, {q, kv, kv}, D, ++sd, &err);
      L.wo = Matrix(src, {a + "o_proj.weight"}, {D}, q, ++sd, &err);
    } else {
      const std::string m = p + k.recurrent;
      const int64_t E = d_.d_inner, H = d_.ssm_H, cd = d_.conv_dim;
      L.in_proj = Matrix(src, {m + "in_proj.weight"}, {d_.proj_rows}, D, ++sd, &err);
      L.out_proj = Matrix(src, {m + "out_proj.weight"}, {D}, E, ++sd, &err);
      L.conv_w = Vector(src, m + "conv1d.weight", {cd, 1, d_.K}, -0.5f, 0.5f, ++sd, &err);
      L.conv_b = Vector(src, m + "conv1d.bias", {cd}, -0.1f, 0.1f, ++sd, &err, /*optional=*/true);
      L.D = Vector(src, m + "D", {H}, 1.0f, 1.0f, ++sd, &err);
      if (L.kind == MixerKind::kMamba2) {
        L.dt_bias = Vector(src, m + "dt_bias", {H}, -6.9f, -2.25f, ++sd, &err);  // dt in [1e-3, 0.1]
        L.A_log = Vector(src, m + "A_log", {H}, 0.0f, 2.77f, ++sd, &err);        // A in [-16, -1]
        L.norm_w = Vector(src, m + "norm.weight", {E}, 1.0f, 1.0f, ++sd, &err);
      } else {
        L.z_bias = Vector(src, m + "z_bias", {E}, 1.27f, 1.28f, ++sd, &err);
      }
    }
    layers_.push_back(L);
  }
  SUBQ_CUDA_CHECK(cudaDeviceSynchronize());
  return err;
}

std::unique_ptr<CudaModel> CudaModel::Upload(const ModelConfig& cfg, const HostTensors& src, std::string* error) {
  std::unique_ptr<CudaModel> m(new CudaModel);
  *error = m->Build(cfg, &src, 0);
  if (!error->empty()) return nullptr;
  return m;
}

std::unique_ptr<CudaModel> CudaModel::Random(const ModelConfig& cfg, uint64_t seed, std::string* error) {
  std::unique_ptr<CudaModel> m(new CudaModel);
  *error = m->Build(cfg, nullptr, seed * 1000003ull);
  if (!error->empty()) return nullptr;
  return m;
}

}  // namespace subq::cuda
