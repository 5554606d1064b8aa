// Discrete Mamba-2 mixer: load, recurrent step, chunked prefill, mixing matrix (see discrete_mamba2.h).
#include "mixers/discrete_mamba2.h"

#include <cmath>
#include <cstring>

#include "mixers/mixers.h"
#include "model/schema.h"
#include "ops/ops.h"

namespace subq {

Result<std::unique_ptr<DiscreteMamba2Mixer>> DiscreteMamba2Mixer::Load(const ModelConfig& cfg, int layer,
                                                                       const TensorStore& store,
                                                                       const std::string& prefix) {
  const DiscreteMamba2Config& c = cfg.dm2;
  if (c.d_state <= 0 || c.n_qk_heads <= 0 || c.n_v_heads <= 0 || c.head_dim <= 0 || c.conv_kernel <= 0 ||
      c.chunk_size <= 0 || cfg.dim <= 0)
    return Errorf("layer {}: bad discrete_mamba2 config (d_state {}, qk heads {}, v heads {}, head_dim {}, conv {}, "
                  "chunk {}, dim {})",
                  layer, c.d_state, c.n_qk_heads, c.n_v_heads, c.head_dim, c.conv_kernel, c.chunk_size, cfg.dim);
  if (c.n_v_heads % c.n_qk_heads != 0)
    return Errorf("layer {}: discrete_mamba2 n_qk_heads {} does not divide n_v_heads {}", layer, c.n_qk_heads,
                  c.n_v_heads);
  auto m = std::unique_ptr<DiscreteMamba2Mixer>(new DiscreteMamba2Mixer(c, cfg.dim));
  m->bf16_state_ = cfg.bf16_state;
  const int64_t D = cfg.dim, E = c.d_inner(), Hv = c.n_v_heads, K = c.conv_kernel;
  const int64_t rows = m->proj_rows(), conv_dim = m->conv_dim();
  for (const char* b : {"in_proj.bias", "out_proj.bias"})
    if (store.Has(prefix + b))
      return Errorf("{}: '{}{}' present: discrete_mamba2 projections with bias are not supported", store.source,
                    prefix, b);
  const TensorInfo* ip = store.Find(prefix + "in_proj.weight");
  if (ip != nullptr && ip->shape.size() == 2 && ip->shape[1] == D && ip->shape[0] != rows)
    return Errorf(
        "{}: '{}in_proj.weight' has {} rows but the config needs 2*d_inner + 2*n_qk_heads*d_state + n_v_heads = "
        "2*{} + 2*{}*{} + {} = {}: d_state, head counts or expand disagree with the tensors",
        ip->file, prefix, ip->shape[0], E, c.n_qk_heads, c.d_state, Hv, rows);
  DiscreteMamba2Weights& w = m->w_;
  if (!c.conv_bias && store.Has(prefix + "conv1d.bias"))
    return Errorf("{}: '{}conv1d.bias' present but ssm_cfg.conv_bias is false", store.source, prefix);
  // Names and shapes from the schema's table (model/schema.h); conv1d.bias when ssm_cfg.conv_bias.
  w.conv_b = Tensor({conv_dim});
  SUBQ_RETURN_IF_ERROR(LoadTable(store, prefix, MixerKindTensors(cfg, MixerKind::kDiscreteMamba2),
                                 {{"in_proj.weight", &w.in_proj}, {"z_bias", &w.z_bias}, {"conv1d.weight", &w.conv_w},
                                  {"conv1d.bias", &w.conv_b}, {"D", &w.D}, {"out_proj.weight", &w.out_proj}}));
  w.conv_w.shape = {conv_dim, K};
  if (layer < 0 || layer >= static_cast<int>(cfg.layers.size()))
    return Errorf("layer {} out of range (config lists {} layers)", layer, cfg.layers.size());
  if (!cfg.layers[layer].attention_heads.empty()) {
    SUBQ_ASSIGN_OR_RETURN(m->kept_, KeptHeadAttention::Load(cfg, layer, store, prefix, c.n_v_heads, c.head_dim));
  }
  return m;
}

std::unique_ptr<LayerState> DiscreteMamba2Mixer::NewState(int max_context) const {
  auto s = std::make_unique<SsmLayerState>(c_.conv_kernel - 1, conv_dim(), c_.n_v_heads, c_.head_dim, c_.d_state,
                                           bf16_state_);
  if (kept_) s->kv = kept_->NewCache(max_context);
  return s;
}

size_t DiscreteMamba2Mixer::WeightBytes() const {
  return w_.in_proj.Bytes() + w_.out_proj.Bytes() + (kept_ ? kept_->WeightBytes() : 0) +
         (w_.conv_w.data.size() + w_.conv_b.data.size() + w_.z_bias.data.size() + c_.n_v_heads) * sizeof(float);
}

size_t DiscreteMamba2Mixer::ScratchFloats(int T, int n_threads) const {
  const size_t E = c_.d_inner(), Hv = c_.n_v_heads;
  return static_cast<size_t>(T) * (proj_rows() + conv_dim() + Hv + E) +
         static_cast<size_t>(n_threads) * (SsmScanScratchFloats(Threads{n_threads}, dims()) + Arena::kAlign) +
         6 * Arena::kAlign + (kept_ ? kept_->ScratchFloats(T, n_threads) : 0);
}

void DiscreteMamba2Mixer::ConvAndDecay(const float* proj, int n, float* conv_state, float* xbc, float* loga) const {
  const int E = c_.d_inner(), Hv = c_.n_v_heads, rows = proj_rows(), cd = conv_dim();
  ops::CausalConv(proj, rows, n, cd, w_.conv_w.ptr(), w_.conv_b.ptr(), c_.conv_kernel, conv_state, xbc, cd,
                  /*silu=*/false);  // [n, x | B | C]
  for (int t = 0; t < n; ++t) {
    const float* ar = proj + static_cast<size_t>(t) * rows + cd + E;  // [Hv]
    for (int h = 0; h < Hv; ++h) loga[static_cast<size_t>(t) * Hv + h] = -ops::Softplus(ar[h]);
  }
}

void DiscreteMamba2Mixer::PrepareFresh(const float* u, int L, std::vector<float>& proj, std::vector<float>& xbc,
                                       std::vector<float>& loga) const {
  const int cd = conv_dim();
  proj.resize(static_cast<size_t>(L) * proj_rows());
  xbc.resize(static_cast<size_t>(L) * cd);
  loga.resize(static_cast<size_t>(L) * c_.n_v_heads);
  std::vector<float> conv(static_cast<size_t>(c_.conv_kernel - 1) * cd, 0.0f);
  ops::Linear(Threads::Default(), u, L, w_.in_proj, proj.data());  // [L, xBC | z | A_log]
  ConvAndDecay(proj.data(), L, conv.data(), xbc.data(), loga.data());
}

void DiscreteMamba2Mixer::Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx,
                                  float* out) const {
  const int E = c_.d_inner(), Hv = c_.n_v_heads, P = c_.head_dim, N = c_.d_state, G = c_.n_qk_heads;
  const int rows = proj_rows(), cd = conv_dim();
  Arena& a = *ctx.arena;
  float* proj = a.Take(static_cast<size_t>(T) * rows);  // [T, xBC | z | A_log]
  float* xbc = a.Take(static_cast<size_t>(T) * cd);     // [T, x | B | C]
  float* loga = a.Take(static_cast<size_t>(T) * Hv);    // [T, Hv]
  float* y = a.Take(static_cast<size_t>(T) * E);        // [T, E]
  const size_t scan_floats = SsmScanScratchFloats(ctx.threads, dims()) + Arena::kAlign;
  float* scan = a.Take(scan_floats * ctx.threads.n);
  ops::Linear(ctx.threads, u, T, w_.in_proj, proj);
  ForEachSsmSequence(ctx.threads, static_cast<int>(seqs.size()), scan, scan_floats,
                     [&](int i, const Threads& inner, float* my_scan) {
    const SeqSlice& s = seqs[i];
    auto& st = static_cast<SsmLayerState&>(*s.state);
    const size_t r0 = s.row0;
    float* X = xbc + r0 * cd;
    ConvAndDecay(proj + r0 * rows, s.n, st.conv.ptr(), X, loga + r0 * Hv);
    float* Y = y + r0 * E;
    SsmScan(inner, dims(), s.n, X, cd, X + E, X + E + G * N, cd, loga + r0 * Hv, st, Y, E, my_scan);
    AddSkip(s.n, Hv, P, w_.D.ptr(), X, cd, Y, E);  // y += D x
  });
  if (kept_) kept_->Forward(u, T, seqs, ctx, y, E);  // kept heads: attention output replaces y_h
  ApplyOutputInPlace(ctx.threads, y, proj + cd, rows, T, out);
}

void DiscreteMamba2Mixer::ApplyOutputInPlace(const Threads& th, float* y, const float* z, int ldz, int L,
                                             float* out) const {
  const int E = c_.d_inner();
  for (int t = 0; t < L; ++t) {
    float* yr = y + static_cast<size_t>(t) * E;
    const float* zr = z + static_cast<size_t>(t) * ldz;
    for (int i = 0; i < E; ++i) yr[i] *= ops::Silu(zr[i] + w_.z_bias.data[i]);
  }
  ops::Linear(th, y, L, w_.out_proj, out);  // [L, dim]
}

void DiscreteMamba2Mixer::ApplyOutput(const float* y, const float* z, int L, float* out) const {
  std::vector<float> tmp(y, y + static_cast<size_t>(L) * c_.d_inner());
  ApplyOutputInPlace(Threads::Default(), tmp.data(), z, c_.d_inner(), L, out);
}

void DiscreteMamba2Mixer::ProjectFresh(const float* u, int L, Tensor* values, Tensor* z) const {
  const int E = c_.d_inner(), P = c_.head_dim, rows = proj_rows(), cd = conv_dim();
  std::vector<float> proj, xbc, loga;
  PrepareFresh(u, L, proj, xbc, loga);
  *values = Tensor({L, E});
  *z = Tensor({L, E});
  for (int t = 0; t < L; ++t) {
    std::memcpy(values->ptr() + static_cast<size_t>(t) * E, xbc.data() + static_cast<size_t>(t) * cd, E * 4);
    std::memcpy(z->ptr() + static_cast<size_t>(t) * E, proj.data() + static_cast<size_t>(t) * rows + cd, E * 4);
  }
  if (kept_) {
    Tensor v;
    kept_->Probabilities(u, L, &v);  // v [L, n_kept*P]
    const int nk = kept_->n_kept();
    for (int t = 0; t < L; ++t)
      for (int k = 0; k < nk; ++k)
        std::memcpy(values->ptr() + static_cast<size_t>(t) * E + kept_->heads()[k] * P,
                    v.ptr() + (static_cast<size_t>(t) * nk + k) * P, P * 4);
  }
}

Tensor DiscreteMamba2Mixer::Materialize(const float* u, int L) const {
  const int E = c_.d_inner(), Hv = c_.n_v_heads, N = c_.d_state, G = c_.n_qk_heads, cd = conv_dim();
  std::vector<float> proj, xbc, loga;
  PrepareFresh(u, L, proj, xbc, loga);
  Tensor M({Hv, L, L});
  std::vector<float> cb(static_cast<size_t>(L) * L);
  std::vector<double> cum(L);
  for (int g = 0; g < G; ++g) {
    // cb[i, j] = C_i . B_j   [L, L]
    ops::Gemm(false, true, L, L, N, 1.0f, xbc.data() + E + G * N + g * N, cd, xbc.data() + E + g * N, cd, 0.0f,
              cb.data(), L);
    for (int h = g * (Hv / G); h < (g + 1) * (Hv / G); ++h) {
      double acc = 0.0;
      for (int t = 0; t < L; ++t) cum[t] = acc += loga[static_cast<size_t>(t) * Hv + h];
      float* Mh = M.ptr() + static_cast<size_t>(h) * L * L;
      for (int i = 0; i < L; ++i) {
        for (int j = 0; j <= i; ++j)
          Mh[static_cast<size_t>(i) * L + j] =
              cb[static_cast<size_t>(i) * L + j] * static_cast<float>(std::exp(cum[i] - cum[j]));
        Mh[static_cast<size_t>(i) * L + i] += w_.D.data[h];  // D on the diagonal (MOHAWK)
      }
    }
  }
  if (kept_) {
    Tensor probs = kept_->Probabilities(u, L, nullptr);  // [n_kept, L, L]
    for (int k = 0; k < kept_->n_kept(); ++k)
      std::memcpy(M.ptr() + static_cast<size_t>(kept_->heads()[k]) * L * L, probs.ptr() + static_cast<size_t>(k) * L * L,
                  static_cast<size_t>(L) * L * 4);
  }
  return M;
}

Result<std::unique_ptr<Mixer>> MakeDiscreteMamba2(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                  const std::string& prefix) {
  SUBQ_ASSIGN_OR_RETURN(auto m, DiscreteMamba2Mixer::Load(cfg, layer, store, prefix));
  return std::unique_ptr<Mixer>(std::move(m));
}

}  // namespace subq
