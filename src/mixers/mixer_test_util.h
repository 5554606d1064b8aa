// Helpers for mixer tests and benchmarks: random tensors and an in-memory TensorStore built from them.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "io/tensor_store.h"
#include "model/config.h"
#include "util/tensor.h"

namespace subq::testing {

inline Tensor RandomTensor(std::vector<int64_t> shape, std::mt19937& rng, float scale, float offset = 0.0f) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : t.data) v = offset + scale * nd(rng);
  return t;
}

inline Tensor UniformTensor(std::vector<int64_t> shape, std::mt19937& rng, float lo, float hi) {
  Tensor t(std::move(shape));
  std::uniform_real_distribution<float> ud(lo, hi);
  for (auto& v : t.data) v = ud(rng);
  return t;
}

// A TensorStore holding f32 copies of `tensors` (names as given).
inline TensorStore StoreFrom(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  TensorStore store;
  store.source = "in-memory test store";
  for (const auto& [name, t] : tensors) {
    std::vector<uint8_t> bytes(t.data.size() * 4);
    if (!bytes.empty()) std::memcpy(bytes.data(), t.data.data(), bytes.size());
    TensorInfo info;
    info.name = name;
    info.dtype = DType::kF32;
    info.shape = t.shape;
    info.nbytes = bytes.size();
    info.file = "memory";
    info.data = store.Own(std::move(bytes));
    (void)store.Add(std::move(info));
  }
  return store;
}

// max |a - b| / max |b| (b the reference).
template <typename A, typename B>
double RelErr(const A& a, const B& b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return num / std::max(den, 1e-30);
}

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Random Mamba-2 mixer weights under `prefix` (SPEC init for A_log, dt_bias; small random elsewhere).
inline NamedTensors RandomMamba2Tensors(const ModelConfig& cfg, std::mt19937& rng, const std::string& prefix) {
  const Mamba2Config& c = cfg.mamba2;
  const int64_t D = cfg.dim, E = c.d_inner(), H = c.n_heads, GN = int64_t{c.n_groups} * c.state_size;
  const int64_t cd = E + 2 * GN, rows = 2 * E + 2 * GN + H;
  Tensor a_log = UniformTensor({H}, rng, 1.0f, 16.0f), dt_bias = UniformTensor({H}, rng, std::log(1e-3f), std::log(0.1f));
  for (auto& v : a_log.data) v = std::log(v);
  for (auto& v : dt_bias.data) {
    const float dt = std::exp(v);
    v = dt + std::log(-std::expm1(-dt));  // inverse softplus
  }
  return {{prefix + "in_proj.weight", RandomTensor({rows, D}, rng, 1.0f / std::sqrt(float(D)))},
          {prefix + "conv1d.weight", RandomTensor({cd, 1, c.conv_kernel}, rng, 0.4f)},
          {prefix + "conv1d.bias", RandomTensor({cd}, rng, 0.1f)},
          {prefix + "dt_bias", std::move(dt_bias)},
          {prefix + "A_log", std::move(a_log)},
          {prefix + "D", RandomTensor({H}, rng, 0.3f, 1.0f)},
          {prefix + "norm.weight", RandomTensor({E}, rng, 0.2f, 1.0f)},
          {prefix + "out_proj.weight", RandomTensor({D, E}, rng, 1.0f / std::sqrt(float(E)))}};
}

// Random Discrete Mamba-2 mixer weights under `prefix` (plus kept-head attention weights when the
// layer keeps attention heads).
inline NamedTensors RandomDiscreteMamba2Tensors(const ModelConfig& cfg, int layer, std::mt19937& rng,
                                                const std::string& prefix) {
  const DiscreteMamba2Config& c = cfg.dm2;
  const int64_t D = cfg.dim, E = c.d_inner(), H = c.n_v_heads, GN = int64_t{c.n_qk_heads} * c.d_state;
  const int64_t cd = E + 2 * GN, rows = 2 * E + 2 * GN + H;
  Tensor in_proj = RandomTensor({rows, D}, rng, 1.0f / std::sqrt(float(D)));
  // A_log rows: bias the decay towards memory (softplus(A_log) small) so long-range terms matter.
  for (int64_t r = rows - H; r < rows; ++r)
    for (int64_t i = 0; i < D; ++i) in_proj.data[r * D + i] *= 0.5f;
  NamedTensors t = {{prefix + "in_proj.weight", std::move(in_proj)},
                    {prefix + "z_bias", RandomTensor({E}, rng, 0.3f, 1.0f)},
                    {prefix + "conv1d.weight", RandomTensor({cd, 1, c.conv_kernel}, rng, 0.4f)},
                    {prefix + "D", RandomTensor({H}, rng, 0.3f, 1.0f)},
                    {prefix + "out_proj.weight", RandomTensor({D, E}, rng, 1.0f / std::sqrt(float(E)))}};
  if (c.conv_bias) t.push_back({prefix + "conv1d.bias", RandomTensor({cd}, rng, 0.1f)});
  const auto& kept = cfg.layers[layer].attention_heads;
  if (!kept.empty()) {
    const int64_t r = static_cast<int64_t>(kept.size()) * c.head_dim;
    for (const char* n : {"attn_q_proj.weight", "attn_k_proj.weight", "attn_v_proj.weight"})
      t.push_back({prefix + n, RandomTensor({r, D}, rng, 1.0f / std::sqrt(float(D)))});
  }
  return t;
}

}  // namespace subq::testing
