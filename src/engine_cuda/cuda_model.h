// CudaModel: the weights of a Llama, Mamba-2 or Llamba (Discrete Mamba-2) model resident on the GPU,
// uploaded once: matrices as bf16 (q/k/v and gate/up fused into one matrix each, so a projection is one
// GEMM), norms and the small mixer vectors as f32. Const after construction and shared by any number
// of CudaRunners. Tensor names are the HF ones of each family (SPEC sections 1-3, model/families.cc).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "ops/cuda/cuda_ops.h"

namespace subq::cuda {

// Where the host-side tensors come from: has(name), and load(name, expected shape, f32 out) -> "" or an
// error naming the tensor (adapters over TensorStore live with their callers).
struct HostTensors {
  std::function<bool(const std::string&)> has;
  std::function<std::string(const std::string&, const std::vector<int64_t>&, std::vector<float>*)> load;
};

struct DeviceLayer {
  MixerKind kind = MixerKind::kAttention;
  float* in_norm = nullptr;   // [dim]
  float* mlp_norm = nullptr;  // [dim], nullptr when the block has no MLP
  bf16* w_gate_up = nullptr;  // [2 hidden, dim]
  bf16* w_down = nullptr;     // [dim, hidden]
  // attention
  bf16* wqkv = nullptr;  // [(H + 2 KV) hd, dim]
  bf16* wo = nullptr;    // [dim, H hd]
  // Mamba-2 / Discrete Mamba-2
  bf16* in_proj = nullptr;   // [proj rows, dim]
  bf16* out_proj = nullptr;  // [dim, d_inner]
  float* conv_w = nullptr;   // [conv_dim, K]
  float* conv_b = nullptr;   // [conv_dim] or nullptr
  float* dt_bias = nullptr;  // [H] (Mamba-2)
  float* A_log = nullptr;    // [H] (Mamba-2)
  float* D = nullptr;        // [H]
  float* norm_w = nullptr;   // [d_inner] (Mamba-2 gated norm)
  float* z_bias = nullptr;   // [d_inner] (Discrete Mamba-2)
};

// Dimensions every runner derives from the config.
struct ModelDims {
  int dim = 0, vocab = 0, hidden = 0;
  int H = 0, KV = 0, hd = 0;                               // attention
  int ssm_H = 0, ssm_P = 0, ssm_N = 0, ssm_G = 1, K = 4;  // SSD mixers
  int d_inner = 0, conv_dim = 0, proj_rows = 0;
  int qkv_width() const { return (H + 2 * KV) * hd; }
};

class CudaModel {
 public:
  // Families llama, mamba2 and llamba; every layer's mixer must be attention, Mamba-2 or Discrete Mamba-2.
  static std::unique_ptr<CudaModel> Upload(const ModelConfig& cfg, const HostTensors& src, std::string* error);
  // Random weights generated on the device (benchmarks): matrices U(-1/sqrt(in), 1/sqrt(in)), norms 1,
  // SSD parameters as the mixers initialise them.
  static std::unique_ptr<CudaModel> Random(const ModelConfig& cfg, uint64_t seed, std::string* error);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ModelDims& dims() const { return d_; }
  const std::vector<DeviceLayer>& layers() const { return layers_; }
  const bf16* embed() const { return embed_; }
  const bf16* lm_head() const { return lm_head_; }
  const float* final_norm() const { return final_norm_; }
  const float* inv_freq() const { return inv_freq_; }  // [hd/2], RoPE (llama3 scaling applied)
  size_t WeightBytes() const { return bytes_; }

 private:
  CudaModel() = default;
  template <typename T>
  T* Alloc(size_t n);
  std::string Build(const ModelConfig& cfg, const HostTensors* src, uint64_t seed);
  bf16* Matrix(const HostTensors* src, const std::vector<std::string>& names, const std::vector<int64_t>& rows,
               int64_t cols, uint64_t seed, std::string* err);
  float* Vector(const HostTensors* src, const std::string& name, const std::vector<int64_t>& shape, float lo,
                float hi, uint64_t seed, std::string* err, bool optional = false);

  ModelConfig cfg_;
  ModelDims d_;
  std::vector<DeviceLayer> layers_;
  bf16* embed_ = nullptr;
  bf16* lm_head_ = nullptr;
  float* final_norm_ = nullptr;
  float* inv_freq_ = nullptr;
  std::vector<void*> allocs_;
  size_t bytes_ = 0;
};

}  // namespace subq::cuda
