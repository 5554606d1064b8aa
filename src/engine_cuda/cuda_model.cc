// Upload (or random generation) of a model's weights onto the GPU (see cuda_model.h). Key names and RoPE
// frequencies come from the CPU engine (model/families.cc, mixers/attention.h), so both load the same files.
#include "engine_cuda/cuda_model.h"

#include <cmath>
#include <cstdio>

#include "mixers/attention.h"
#include "mixers/mamba3.h"
#include "model/model.h"

namespace subq::cuda {

template <typename T>
T* CudaModel::Alloc(size_t n) {
  void* p = nullptr;
  SUBQ_CUDA_CHECK(cudaMalloc(&p, (n ? n : 1) * sizeof(T)));
  allocs_.push_back(p);
  bytes_ += n * sizeof(T);
  return static_cast<T*>(p);
}

CudaModel::~CudaModel() {
  for (void* p : allocs_) cudaFree(p);
}

float* CudaModel::ToDevice(const std::vector<float>& host) {
  float* d = Alloc<float>(host.size());
  SUBQ_CUDA_CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  return d;
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
  for (size_t i = 0; i < names.size() && err->empty(); ++i) {
    *err = src->load(names[i], {rows[i], cols}, &f);
    for (size_t j = 0; j < f.size() && err->empty(); ++j) host[off++] = __float2bfloat16(f[j]);
  }
  if (!err->empty()) return nullptr;
  SUBQ_CUDA_CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(bf16), cudaMemcpyHostToDevice));
  return d;
}

float* CudaModel::Vector(const HostTensors* src, const std::vector<std::string>& names,
                         const std::vector<int64_t>& shape, float lo, float hi, uint64_t seed, std::string* err,
                         bool optional) {
  size_t n = 1;
  for (int64_t s : shape) n *= static_cast<size_t>(s);
  if (src != nullptr && optional && !src->has(names[0])) return nullptr;
  if (src == nullptr) {
    float* d = Alloc<float>(n * names.size());
    FillUniform(nullptr, d, n * names.size(), seed, lo, hi);
    return d;
  }
  std::vector<float> all, f;
  for (const std::string& name : names) {
    if (!err->empty()) return nullptr;
    *err = src->load(name, shape, &f);
    all.insert(all.end(), f.begin(), f.end());
  }
  return err->empty() ? ToDevice(all) : nullptr;
}

std::string CudaModel::BuildRecurrent(const ModelConfig& c, const HostTensors* src, int layer, const std::string& m,
                                      uint64_t* sd, DeviceLayer* L) {
  std::string err;
  const int64_t D = c.dim;
  auto vec = [&](const std::string& name, const std::vector<int64_t>& shape, float lo, float hi, bool opt = false) {
    return Vector(src, {m + name}, shape, lo, hi, ++*sd, &err, opt);
  };
  if (L->kind == MixerKind::kMamba2 || L->kind == MixerKind::kDiscreteMamba2) {
    const int64_t E = d_.d_inner, H = d_.ssm_H, cd = d_.conv_dim, P = d_.ssm_P;
    L->n_kept = static_cast<int>(c.layers[layer].attention_heads.size());
    const int64_t kw = int64_t(L->n_kept) * P;
    L->proj_rows = d_.proj_rows + 3 * static_cast<int>(kw);
    if (L->n_kept == 0) {
      L->in_proj = Matrix(src, {m + "in_proj.weight"}, {d_.proj_rows}, D, ++*sd, &err);
    } else {  // kept heads' q | k | v after the SSD rows (mixers/head_hybrid.h)
      if (c.dm2.head_dim % 8 != 0) return "the CUDA kept-head attention needs head_dim divisible by 8";
      L->in_proj = Matrix(src, {m + "in_proj.weight", m + "attn_q_proj.weight", m + "attn_k_proj.weight",
                                m + "attn_v_proj.weight"},
                          {d_.proj_rows, kw, kw, kw}, D, ++*sd, &err);
      std::vector<int> heads = c.layers[layer].attention_heads;
      for (int h : heads)
        if (h < 0 || h >= H) return "layer " + std::to_string(layer) + ": kept attention head out of range";
      L->kept_heads = Alloc<int>(heads.size());
      SUBQ_CUDA_CHECK(cudaMemcpy(L->kept_heads, heads.data(), heads.size() * sizeof(int), cudaMemcpyHostToDevice));
      AttentionConfig rope = c.attn;
      rope.head_dim = static_cast<int>(P);
      L->kept_inv_freq = ToDevice(RopeInvFreq(rope));
    }
    L->out_proj = Matrix(src, {m + "out_proj.weight"}, {D}, E, ++*sd, &err);
    L->conv_w = vec("conv1d.weight", {cd, 1, d_.K}, -0.5f, 0.5f);
    L->conv_b = vec("conv1d.bias", {cd}, -0.1f, 0.1f, /*opt=*/true);
    L->D = vec("D", {H}, 1.0f, 1.0f);
    if (L->kind == MixerKind::kMamba2) {
      L->dt_bias = vec("dt_bias", {H}, -6.9f, -2.25f);  // dt in [1e-3, 0.1]
      L->A_log = vec("A_log", {H}, 0.0f, 2.77f);        // A in [-16, -1]
      L->norm_w = vec("norm.weight", {E}, 1.0f, 1.0f);
    } else {
      L->z_bias = vec("z_bias", {E}, 1.27f, 1.28f);
    }
  } else if (L->kind == MixerKind::kMamba3) {
    const Mamba3Config& k = c.mamba3;
    const int64_t H = k.n_heads, P = k.head_dim, N = k.state_size, R = k.mimo_rank, E = k.d_inner();
    L->proj_rows = Mamba3Mixer::InProjRows(k, c.dim);
    L->in_proj = Matrix(src, {m + "in_proj.weight"}, {L->proj_rows}, D, ++*sd, &err);
    L->out_proj = Matrix(src, {m + "out_proj.weight"}, {D}, E, ++*sd, &err);
    L->dt_bias = vec("dt_bias", {H}, -4.0f, -2.0f);
    L->D = vec("D", {H}, 1.0f, 1.0f);
    L->B_norm = vec("B_norm.weight", {N}, 1.0f, 1.0f);
    L->C_norm = vec("C_norm.weight", {N}, 1.0f, 1.0f);
    L->B_bias = vec("B_bias", {H, R, N}, 1.0f, 1.0f);
    L->C_bias = vec("C_bias", {H, R, N}, 1.0f, 1.0f);
    if (R > 1 || (src != nullptr && src->has(m + "mimo_x"))) {
      L->mimo_x = vec("mimo_x", {H, R, P}, 1.0f / R, 1.0f / R);
      L->mimo_z = vec("mimo_z", {H, R, P}, 1.0f, 1.0f);
      L->mimo_o = vec("mimo_o", {H, R, P}, 1.0f / R, 1.0f / R);
    }
    if (k.output_norm) L->norm_w = vec("norm.weight", {E}, 1.0f, 1.0f);
  } else if (L->kind == MixerKind::kGatedDeltaNet) {
    const int64_t Ck = d_.gdn_Ck(), Cv = d_.gdn_Cv(), Hv = d_.gdn_Hv, K = d_.gdn_K;
    L->proj_rows = static_cast<int>(2 * Ck + 2 * Cv + 2 * Hv);
    L->in_proj = Matrix(src, {m + "q_proj.weight", m + "k_proj.weight", m + "v_proj.weight", m + "g_proj.weight",
                              m + "a_proj.weight", m + "b_proj.weight"},
                        {Ck, Ck, Cv, Cv, Hv, Hv}, D, ++*sd, &err);
    L->out_proj = Matrix(src, {m + "o_proj.weight"}, {D}, Cv, ++*sd, &err);
    if (!err.empty()) return err;
    // q, k, v convs stacked into one [2 Ck + Cv, K] (the shapes differ, so one Vector call each).
    std::vector<float> conv, f;
    for (const auto& [name, C] : {std::pair<const char*, int64_t>{"q_conv1d.weight", Ck}, {"k_conv1d.weight", Ck},
                                  {"v_conv1d.weight", Cv}}) {
      if (src == nullptr) {
        f.assign(static_cast<size_t>(C * K), 0.0f);
        for (int64_t ch = 0; ch < C; ++ch) f[ch * K + K - 1] = 1.0f;  // identity conv
      } else if (std::string e = src->load(m + name, {C, 1, K}, &f); !e.empty()) {
        return e;
      }
      conv.insert(conv.end(), f.begin(), f.end());
    }
    L->conv_w = ToDevice(conv);
    L->A_log = vec("A_log", {Hv}, 0.0f, 2.77f);
    L->dt_bias = vec("dt_bias", {Hv}, -6.9f, -2.25f);
    L->norm_w = vec("o_norm.weight", {d_.gdn_dv}, 1.0f, 1.0f);
  }
  return err;
}

std::string CudaModel::Build(const ModelConfig& c, const HostTensors* src, uint64_t seed) {
  cfg_ = c;
  auto keys = KeysForFamily(c, [src](const std::string& n) { return src != nullptr && src->has(n); });
  if (!keys.ok()) return keys.status().message();
  const FamilyKeys& k = *keys;
  if (static_cast<int>(c.layers.size()) != c.n_layers) return "config lists a mixer for each layer";
  d_.dim = c.dim, d_.vocab = c.vocab_size, d_.hidden = c.hidden_dim;
  d_.H = c.attn.n_heads, d_.KV = c.attn.n_kv_heads, d_.hd = c.attn.head_dim;
  bool m2 = false, dm2 = false;
  for (const LayerConfig& l : c.layers) {
    m2 |= l.mixer == MixerKind::kMamba2;
    dm2 |= l.mixer == MixerKind::kDiscreteMamba2;
    if (l.mixer == MixerKind::kOryx)
      return "the CUDA backend does not run oryx (multi-mixer) layers: use the CPU engine (--device cpu)";
    if (!l.attention_heads.empty() && l.mixer != MixerKind::kDiscreteMamba2)
      return "the CUDA backend keeps attention heads in Discrete Mamba-2 layers only (as the CPU engine)";
  }
  if (m2 && dm2) return "the CUDA backend runs one kind of SSD mixer (Mamba-2 or Discrete Mamba-2) per model";
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
  bool m3 = false, gdn = false;
  for (const LayerConfig& l : c.layers)
    m3 |= l.mixer == MixerKind::kMamba3, gdn |= l.mixer == MixerKind::kGatedDeltaNet;
  if (m3) {
    const Mamba3Config& m = c.mamba3;
    if (Status s = Mamba3Mixer::ValidateConfig(m, c.dim); !s.ok()) return s.message();
    d_.m3_H = m.n_heads, d_.m3_P = m.head_dim, d_.m3_N = m.state_size, d_.m3_G = m.n_groups;
    d_.m3_R = m.mimo_rank, d_.m3_NA = m.n_angles();
    const int tpr = m.state_size / 4;
    if (m.state_size % 4 != 0 || tpr > 32 || (tpr & (tpr - 1)) != 0)
      return "the CUDA Mamba-3 kernels need state_size/4 a power of two <= 32";
  }
  if (gdn) {
    const GatedDeltaNetConfig& g = c.gdn;
    d_.gdn_Hk = g.n_qk_heads, d_.gdn_Hv = g.n_v_heads, d_.gdn_dk = g.head_k_dim, d_.gdn_dv = g.head_v_dim;
    d_.gdn_K = g.conv_kernel;
    const int tpr = g.head_k_dim / 4;
    if (g.n_qk_heads <= 0 || g.n_v_heads % std::max(1, g.n_qk_heads) != 0 || g.head_k_dim % 4 != 0 || tpr > 32 ||
        (tpr & (tpr - 1)) != 0 || d_.gdn_Cv() % 4 != 0 || g.conv_kernel > 8)
      return "the CUDA Gated DeltaNet kernels need head_k_dim/4 a power of two <= 32, n_v_heads*head_v_dim "
             "divisible by 4 and conv width <= 8";
  }
  std::string err;
  uint64_t sd = seed;
  const int64_t D = c.dim;
  embed_ = Matrix(src, {k.embed}, {c.vocab_size}, D, ++sd, &err);
  final_norm_ = Vector(src, {k.final_norm}, {D}, 1.0f, 1.0f, ++sd, &err);
  const bool own_head = !c.tie_embeddings && (src == nullptr || src->has(k.lm_head));
  lm_head_ = own_head ? Matrix(src, {k.lm_head}, {c.vocab_size}, D, ++sd, &err) : embed_;
  if (c.attn.head_dim > 0) inv_freq_ = ToDevice(RopeInvFreq(c.attn));
  for (int i = 0; i < c.n_layers && err.empty(); ++i) {
    const std::string p = k.LayerPrefix(i);
    DeviceLayer L;
    L.kind = c.layers[i].mixer;
    L.in_norm = Vector(src, {p + k.in_norm}, {D}, 1.0f, 1.0f, ++sd, &err);
    if (c.hidden_dim > 0) {
      const int64_t Hd = c.hidden_dim;
      L.mlp_norm = Vector(src, {p + k.mlp_norm}, {D}, 1.0f, 1.0f, ++sd, &err);
      L.w_gate_up = Matrix(src, {p + k.mlp + "gate_proj.weight", p + k.mlp + "up_proj.weight"}, {Hd, Hd}, D, ++sd, &err);
      L.w_down = Matrix(src, {p + k.mlp + "down_proj.weight"}, {D}, Hd, ++sd, &err);
    }
    if (!err.empty()) break;
    if (L.kind == MixerKind::kAttention) {
      const std::string a = p + k.attention;
      const int64_t q = int64_t(d_.H) * d_.hd, kv = int64_t(d_.KV) * d_.hd;
      L.wqkv = Matrix(src, {a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"}, {q, kv, kv}, D, ++sd, &err);
      L.wo = Matrix(src, {a + "o_proj.weight"}, {D}, q, ++sd, &err);
    } else {
      err = BuildRecurrent(c, src, i, p + k.recurrent, &sd, &L);
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
