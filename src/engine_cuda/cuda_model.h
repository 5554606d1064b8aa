// CudaModel: the weights of a model resident on the GPU, uploaded once: matrices as bf16 (the input
// projections of a layer fused into one matrix, so a projection is one GEMM), norms and the small mixer
// vectors as f32. Any per-layer mix of attention, Mamba-2, Discrete Mamba-2 (with or without kept
// attention heads), Mamba-3 (SISO or MIMO) and Gated DeltaNet layers, in the families of model/families.cc
// (tensor names as the CPU engine loads them, SPEC sections 1-5). Const after construction and shared by
// any number of CudaRunners.
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
  // Recurrent mixers: one fused input projection of proj_rows outputs, and the output projection.
  //   Mamba-2 [z | xBC | dt], Discrete Mamba-2 [xBC | z | A_log] (+ [q | k | v] of kept heads),
  //   Mamba-3 [z | x | B | C | dd_dt | dd_A | trap | angle], GDN [q | k | v | g | a | b].
  bf16* in_proj = nullptr;   // [proj_rows, dim]
  bf16* out_proj = nullptr;  // [dim, d_inner]
  int proj_rows = 0;
  float* conv_w = nullptr;   // [conv_dim, K] (GDN: q, k, v convs stacked)
  float* conv_b = nullptr;   // [conv_dim] or nullptr
  float* dt_bias = nullptr;  // [H] (Mamba-2, Mamba-3, GDN)
  float* A_log = nullptr;    // [H] (Mamba-2, GDN)
  float* D = nullptr;        // [H]
  float* norm_w = nullptr;   // Mamba-2 gated norm [d_inner]; Mamba-3 output norm [d_inner]; GDN o_norm [dv]
  float* z_bias = nullptr;   // [d_inner] (Discrete Mamba-2)
  // Mamba-3
  float *B_norm = nullptr, *C_norm = nullptr;                       // [N]
  float *B_bias = nullptr, *C_bias = nullptr;                       // [H, R, N]
  float *mimo_x = nullptr, *mimo_z = nullptr, *mimo_o = nullptr;  // [H, R, P] (MIMO)
  // Head-level hybrid (Discrete Mamba-2 keeping attention heads, mixers/head_hybrid.h).
  int n_kept = 0;
  int* kept_heads = nullptr;        // [n_kept] device
  float* kept_inv_freq = nullptr;  // [P/2]
};

// Dimensions every runner derives from the config.
struct ModelDims {
  int dim = 0, vocab = 0, hidden = 0;
  int H = 0, KV = 0, hd = 0;                               // attention
  int ssm_H = 0, ssm_P = 0, ssm_N = 0, ssm_G = 1, K = 4;  // SSD mixers (Mamba-2 / Discrete Mamba-2)
  int d_inner = 0, conv_dim = 0, proj_rows = 0;           // SSD mixers (proj_rows without kept heads)
  int m3_H = 0, m3_P = 0, m3_N = 0, m3_G = 1, m3_R = 1, m3_NA = 0;  // Mamba-3
  int gdn_Hk = 0, gdn_Hv = 0, gdn_dk = 0, gdn_dv = 0, gdn_K = 4;   // Gated DeltaNet
  int qkv_width() const { return (H + 2 * KV) * hd; }
  int gdn_Ck() const { return gdn_Hk * gdn_dk; }
  int gdn_Cv() const { return gdn_Hv * gdn_dv; }
};

class CudaModel {
 public:
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
  std::string BuildRecurrent(const ModelConfig& c, const HostTensors* src, int layer, const std::string& m,
                             uint64_t* sd, DeviceLayer* L);
  bf16* Matrix(const HostTensors* src, const std::vector<std::string>& names, const std::vector<int64_t>& rows,
               int64_t cols, uint64_t seed, std::string* err);
  // names' tensors (each of `shape`) stacked; optional: nullptr when the first name is absent.
  float* Vector(const HostTensors* src, const std::vector<std::string>& names, const std::vector<int64_t>& shape,
                float lo, float hi, uint64_t seed, std::string* err, bool optional = false);
  float* ToDevice(const std::vector<float>& host);

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
