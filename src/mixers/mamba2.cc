// Mamba-2 mixer: load, recurrent step, chunked prefill, mixing matrix (see mamba2.h).
#include "mixers/mamba2.h"

#include <cmath>
#include <cstring>

#include "mixers/mixers.h"
#include "model/schema.h"
#include "ops/ops.h"

namespace subq {

Result<std::unique_ptr<Mamba2Mixer>> Mamba2Mixer::Load(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                       const std::string& prefix) {
  const Mamba2Config& c = cfg.mamba2;
  if (c.n_heads <= 0 || c.head_dim <= 0 || c.state_size <= 0 || c.n_groups <= 0 || c.conv_kernel <= 0 ||
      c.chunk_size <= 0 || cfg.dim <= 0)
    return Errorf("layer {}: bad mamba2 config (heads {}, head_dim {}, state {}, groups {}, conv {}, chunk {}, dim {})",
                  layer, c.n_heads, c.head_dim, c.state_size, c.n_groups, c.conv_kernel, c.chunk_size, cfg.dim);
  if (c.n_heads % c.n_groups != 0)
    return Errorf("layer {}: mamba2 n_groups {} does not divide num_heads {}", layer, c.n_groups, c.n_heads);
  if (layer >= 0 && layer < static_cast<int>(cfg.layers.size()) && !cfg.layers[layer].attention_heads.empty())
    return Errorf("layer {}: kept attention heads are supported in discrete_mamba2 layers only, not mamba2", layer);
  auto m = std::unique_ptr<Mamba2Mixer>(new Mamba2Mixer(c, cfg.dim));
  m->bf16_state_ = cfg.bf16_state;
  const int64_t D = cfg.dim, E = c.d_inner(), H = c.n_heads;
  const int64_t rows = m->proj_rows(), conv_dim = m->conv_dim(), K = c.conv_kernel;
  for (const char* b : {"in_proj.bias", "out_proj.bias"})
    if (store.Has(prefix + b))
      return Errorf("{}: '{}{}' present: mamba2 projections with bias (use_bias) are not supported", store.source,
                    prefix, b);
  const TensorInfo* ip = store.Find(prefix + "in_proj.weight");
  if (ip != nullptr && ip->shape.size() == 2 && ip->shape[1] == D && ip->shape[0] != rows)
    return Errorf(
        "{}: '{}in_proj.weight' has {} rows but the config needs 2*d_inner + 2*n_groups*state_size + num_heads = "
        "2*{} + 2*{}*{} + {} = {}: state_size, n_groups, num_heads or head_dim disagree with the tensors",
        ip->file, prefix, ip->shape[0], E, c.n_groups, c.state_size, H, rows);
  Mamba2Weights& w = m->w_;
  // Names and shapes from the schema's table (model/schema.h); conv1d.bias is optional (use_conv_bias).
  w.conv_b = Tensor({conv_dim});
  SUBQ_RETURN_IF_ERROR(LoadTable(store, prefix, MixerKindTensors(cfg, MixerKind::kMamba2),
                                 {{"in_proj.weight", &w.in_proj}, {"conv1d.weight", &w.conv_w}, {"conv1d.bias", &w.conv_b},
                                  {"dt_bias", &w.dt_bias}, {"A_log", &w.A_log}, {"D", &w.D}, {"norm.weight", &w.norm_w},
                                  {"out_proj.weight", &w.out_proj}}));
  w.conv_w.shape = {conv_dim, K};
  return m;
}

std::unique_ptr<LayerState> Mamba2Mixer::NewState(int /*max_context*/) const {
  return std::make_unique<SsmLayerState>(c_.conv_kernel - 1, conv_dim(), c_.n_heads, c_.head_dim, c_.state_size,
                                         bf16_state_);
}

size_t Mamba2Mixer::WeightBytes() const {
  return w_.in_proj.Bytes() + w_.out_proj.Bytes() +
         (w_.conv_w.data.size() + w_.conv_b.data.size() + 3 * c_.n_heads + c_.d_inner()) * sizeof(float);
}

size_t Mamba2Mixer::ScratchFloats(int T, int n_threads) const {
  const size_t E = c_.d_inner(), H = c_.n_heads;
  return static_cast<size_t>(T) * (proj_rows() + conv_dim() + 2 * H + 2 * E) +
         static_cast<size_t>(n_threads) * (SsmScanScratchFloats(Threads{n_threads}, dims()) + Arena::kAlign) +
         8 * Arena::kAlign;
}

void Mamba2Mixer::ConvAndDt(const float* proj, int n, float* conv_state, float* xbc, float* dt, float* loga) const {
  const int E = c_.d_inner(), H = c_.n_heads, rows = proj_rows(), cd = conv_dim();
  ops::CausalConv(proj + E, rows, n, cd, w_.conv_w.ptr(), w_.conv_b.ptr(), c_.conv_kernel, conv_state, xbc, cd,
                  /*silu=*/true);  // [n, x | B | C]
  for (int t = 0; t < n; ++t) {
    const float* dr = proj + static_cast<size_t>(t) * rows + E + cd;  // [H]
    for (int h = 0; h < H; ++h) {
      const float d = ops::Softplus(dr[h] + w_.dt_bias.data[h]);
      dt[static_cast<size_t>(t) * H + h] = d;
      loga[static_cast<size_t>(t) * H + h] = d * -std::exp(w_.A_log.data[h]);  // dt * A
    }
  }
}

void Mamba2Mixer::PrepareFresh(const float* u, int L, std::vector<float>& proj, std::vector<float>& xbc,
                               std::vector<float>& dt, std::vector<float>& loga) const {
  const int H = c_.n_heads, cd = conv_dim();
  proj.resize(static_cast<size_t>(L) * proj_rows());
  xbc.resize(static_cast<size_t>(L) * cd);
  dt.resize(static_cast<size_t>(L) * H);
  loga.resize(static_cast<size_t>(L) * H);
  std::vector<float> conv(static_cast<size_t>(c_.conv_kernel - 1) * cd, 0.0f);
  ops::Linear(Threads::Default(), u, L, w_.in_proj, proj.data());  // [L, z | xBC | dt]
  ConvAndDt(proj.data(), L, conv.data(), xbc.data(), dt.data(), loga.data());
}

void Mamba2Mixer::Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx,
                          float* out) const {
  const int E = c_.d_inner(), H = c_.n_heads, P = c_.head_dim, N = c_.state_size, G = c_.n_groups;
  const int rows = proj_rows(), cd = conv_dim();
  Arena& a = *ctx.arena;
  float* proj = a.Take(static_cast<size_t>(T) * rows);  // [T, z | xBC | dt]
  float* xbc = a.Take(static_cast<size_t>(T) * cd);     // [T, x | B | C]
  float* dt = a.Take(static_cast<size_t>(T) * H);       // [T, H]
  float* loga = a.Take(static_cast<size_t>(T) * H);     // [T, H]
  float* xdt = a.Take(static_cast<size_t>(T) * E);      // [T, E]
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
    ConvAndDt(proj + r0 * rows, s.n, st.conv.ptr(), X, dt + r0 * H, loga + r0 * H);
    for (int t = 0; t < s.n; ++t)  // X = x * dt  [n, E]
      for (int h = 0; h < H; ++h) {
        const float d = dt[(r0 + t) * H + h];
        const float* xr = X + static_cast<size_t>(t) * cd + h * P;
        float* o = xdt + (r0 + t) * E + h * P;
        for (int p = 0; p < P; ++p) o[p] = xr[p] * d;
      }
    float* Y = y + r0 * E;
    SsmScan(inner, dims(), s.n, xdt + r0 * E, E, X + E, X + E + G * N, cd, loga + r0 * H, st, Y, E, my_scan);
    AddSkip(s.n, H, P, w_.D.ptr(), X, cd, Y, E);  // y += D x
  });
  ApplyOutputInPlace(ctx.threads, y, proj, rows, T, out);
}

void Mamba2Mixer::ApplyOutputInPlace(const Threads& th, float* y, const float* z, int ldz, int L, float* out) const {
  const int E = c_.d_inner();
  const int gs = c_.norm_grouped ? E / c_.n_groups : E;  // norm group size
  ops::GatedRmsNorm(y, E, z, ldz, w_.norm_w.ptr(), L, E, gs, c_.norm_eps);  // gate before the norm
  ops::Linear(th, y, L, w_.out_proj, out);                                   // [L, dim]
}

void Mamba2Mixer::ApplyOutput(const float* y, const float* z, int L, float* out) const {
  std::vector<float> tmp(y, y + static_cast<size_t>(L) * c_.d_inner());
  ApplyOutputInPlace(Threads::Default(), tmp.data(), z, c_.d_inner(), L, out);
}

void Mamba2Mixer::ProjectFresh(const float* u, int L, Tensor* x, Tensor* z) const {
  const int E = c_.d_inner(), rows = proj_rows(), cd = conv_dim();
  std::vector<float> proj, xbc, dt, loga;
  PrepareFresh(u, L, proj, xbc, dt, loga);
  *x = Tensor({L, E});
  *z = Tensor({L, E});
  for (int t = 0; t < L; ++t) {
    std::memcpy(x->ptr() + static_cast<size_t>(t) * E, xbc.data() + static_cast<size_t>(t) * cd, E * 4);
    std::memcpy(z->ptr() + static_cast<size_t>(t) * E, proj.data() + static_cast<size_t>(t) * rows, E * 4);
  }
}

Tensor Mamba2Mixer::Materialize(const float* u, int L) const {
  const int E = c_.d_inner(), H = c_.n_heads, N = c_.state_size, G = c_.n_groups, cd = conv_dim();
  std::vector<float> proj, xbc, dt, loga;
  PrepareFresh(u, L, proj, xbc, dt, loga);
  Tensor M({H, L, L});
  std::vector<float> cb(static_cast<size_t>(L) * L);
  std::vector<double> cum(L);
  for (int g = 0; g < G; ++g) {
    // cb[i, j] = C_i . B_j   [L, L]
    ops::Gemm(false, true, L, L, N, 1.0f, xbc.data() + E + G * N + g * N, cd, xbc.data() + E + g * N, cd, 0.0f,
              cb.data(), L);
    for (int h = g * (H / G); h < (g + 1) * (H / G); ++h) {
      double acc = 0.0;
      for (int t = 0; t < L; ++t) cum[t] = acc += loga[static_cast<size_t>(t) * H + h];
      float* Mh = M.ptr() + static_cast<size_t>(h) * L * L;
      for (int i = 0; i < L; ++i)
        for (int j = 0; j <= i; ++j)
          Mh[static_cast<size_t>(i) * L + j] = cb[static_cast<size_t>(i) * L + j] *
                                               static_cast<float>(std::exp(cum[i] - cum[j])) *
                                               dt[static_cast<size_t>(j) * H + h];
      for (int i = 0; i < L; ++i) Mh[static_cast<size_t>(i) * L + i] += w_.D.data[h];  // y = M x: D skip included
    }
  }
  return M;
}

Result<std::unique_ptr<Mixer>> MakeMamba2(const ModelConfig& cfg, int layer, const TensorStore& store,
                                          const std::string& prefix) {
  SUBQ_ASSIGN_OR_RETURN(auto m, Mamba2Mixer::Load(cfg, layer, store, prefix));
  return std::unique_ptr<Mixer>(std::move(m));
}

}  // namespace subq
