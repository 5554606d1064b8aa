// CudaRunner's forward pass: embed -> blocks (x += mixer(norm(x)); x += SwiGLU(norm(x))) -> norm -> LM
// head -> next token, as model/model.cc on the CPU; one function per mixer kind. Every projection is one
// bf16 GEMM over all rows; recurrent cores run per row (decode) or over the one prefilled sequence.
#include <algorithm>

#include "engine_cuda/cuda_runner.h"

namespace subq::cuda {

void CudaRunner::AttentionLayer(const DeviceLayer& L, const Pools& pl, int rows) {
  const ModelDims& d = m_.dims();
  const ModelConfig& c = m_.config();
  const int R = IoRows();
  const int *slot = d_io_ + R, *pos = d_io_ + 2 * R;
  cudaStream_t s = stream_;
  const int qw = d.qkv_width(), qd = d.H * d.hd;
  gemm_->Run(s, hb_, d.dim, rows, L.wqkv, qw, d.dim, proj_, qw);  // [rows, q | k | v]
  Rope(s, proj_, qw, rows, d.H, d.hd, pos, m_.inv_freq(), c.attn.rope_interleaved);
  Rope(s, proj_ + qd, qw, rows, d.KV, d.hd, pos, m_.inv_freq(), c.attn.rope_interleaved);
  KvAppend(s, proj_ + qd, proj_ + qd + d.KV * d.hd, qw, rows, d.KV, d.hd, pl.kc, pl.vc, max_context_, slot, pos);
  Attention(s, proj_, qw, rows, d.H, d.KV, d.hd, pl.kc, pl.vc, max_context_, slot, pos, max_context_, hb_, qd,
            attn_scratch_);                                        // [rows, H hd]
  gemm_->Run(s, hb_, qd, rows, L.wo, d.dim, qd, x_, d.dim, true);  // x += o_proj(att)
}

void CudaRunner::SsdLayer(const DeviceLayer& L, const Pools& pl, int rows, bool decode, int pslot) {
  const ModelDims& d = m_.dims();
  const ModelConfig& c = m_.config();
  const int R = IoRows();
  const int *slot = d_io_ + R, *pos = d_io_ + 2 * R;
  cudaStream_t s = stream_;
  const bool m2 = L.kind == MixerKind::kMamba2;
  const int E = d.d_inner, cd = d.conv_dim, ld = Ld(L), GN = d.ssm_G * d.ssm_N;
  gemm_->Run(s, hb_, d.dim, rows, L.in_proj, L.proj_rows, d.dim, proj_, ld);
  // Mamba-2 rows [z | xBC | dt]; Discrete Mamba-2 rows [xBC | z | A_log] (+ kept heads' q | k | v).
  const float* xbc_in = m2 ? proj_ + E : proj_;
  const float* z = m2 ? proj_ : proj_ + cd;
  const float* dt = m2 ? proj_ + E + cd : proj_ + cd + E;
  const SsdParams p{d.ssm_H, d.ssm_P, d.ssm_N, d.ssm_G, m2 ? L.dt_bias : nullptr, m2 ? L.A_log : nullptr, L.D};
  if (decode) {
    CausalConvStep(s, xbc_in, ld, rows, cd, L.conv_w, L.conv_b, d.K, pl.f[0], slot, xbc_, cd, m2);
    SsdStep(s, p, rows, xbc_, cd, xbc_ + E, xbc_ + E + GN, cd, dt, ld, pl.f[1], slot, y_, E);
  } else {
    CausalConvPrefill(s, xbc_in, ld, rows, cd, L.conv_w, L.conv_b, d.K, pl.f[0] + pslot * pl.per[0], xbc_, cd, m2);
    SsdChunkedScan(s, p, rows, xbc_, cd, xbc_ + E, xbc_ + E + GN, cd, dt, ld, pl.f[1] + pslot * pl.per[1], y_, E,
                   ssd_scratch_);
  }
  if (L.n_kept > 0) {  // kept heads: causal attention over their own KV cache replaces y_h (mixers/head_hybrid.h)
    const int P = d.ssm_P, kw = L.n_kept * P;
    float* q = proj_ + d.proj_rows;
    Rope(s, q, ld, rows, L.n_kept, P, pos, L.kept_inv_freq, false);
    Rope(s, q + kw, ld, rows, L.n_kept, P, pos, L.kept_inv_freq, false);
    KvAppend(s, q + kw, q + 2 * kw, ld, rows, L.n_kept, P, pl.kc, pl.vc, max_context_, slot, pos);
    Attention(s, q, ld, rows, L.n_kept, L.n_kept, P, pl.kc, pl.vc, max_context_, slot, pos, max_context_, hb_, kw,
              attn_scratch_);                                   // [rows, n_kept P] bf16
    ScatterHeads(s, hb_, kw, rows, L.kept_heads, L.n_kept, P, y_, E);  // y[:, heads[k] P ..] = att[:, k P ..]
  }
  if (m2) {
    const int group = c.mamba2.norm_grouped ? E / d.ssm_G : E;
    GatedRmsNorm(s, y_, E, z, ld, L.norm_w, hb_, rows, E, group, c.mamba2.norm_eps);
  } else {
    SiluGate(s, y_, E, z, ld, L.z_bias, hb_, rows, E);
  }
  gemm_->Run(s, hb_, E, rows, L.out_proj, d.dim, E, x_, d.dim, true);  // x += out_proj(y)
}

void CudaRunner::Mamba3Layer(const DeviceLayer& L, const Pools& pl, int rows, bool decode) {
  const ModelDims& d = m_.dims();
  const ModelConfig& c = m_.config();
  cudaStream_t s = stream_;
  const int ld = Ld(L), E = d.m3_H * d.m3_P;
  gemm_->Run(s, hb_, d.dim, rows, L.in_proj, L.proj_rows, d.dim, proj_, ld);  // [rows, z | x | B | C | ...]
  Mamba3Params p;
  p.H = d.m3_H, p.P = d.m3_P, p.N = d.m3_N, p.G = d.m3_G, p.R = d.m3_R, p.NA = d.m3_NA;
  p.half_split = L.mimo_x != nullptr;
  p.dt_bias = L.dt_bias, p.D = L.D, p.B_norm = L.B_norm, p.C_norm = L.C_norm, p.B_bias = L.B_bias, p.C_bias = L.C_bias;
  p.mimo_x = L.mimo_x, p.mimo_z = L.mimo_z, p.mimo_o = L.mimo_o;
  p.out_norm = c.mamba3.output_norm ? L.norm_w : nullptr;
  const Mamba3Pools st{pl.f[0], pl.f[1], pl.f[2], pl.f[3]};
  Mamba3Forward(s, p, rows, decode ? 1 : rows, proj_, ld, st, d_io_ + IoRows(), hb_, m3_scratch_);  // [rows, E] bf16
  gemm_->Run(s, hb_, E, rows, L.out_proj, d.dim, E, x_, d.dim, true);                              // x += out_proj
}

void CudaRunner::GdnLayer(const DeviceLayer& L, const Pools& pl, int rows, bool decode, int pslot) {
  const ModelDims& d = m_.dims();
  const ModelConfig& c = m_.config();
  const int* slot = d_io_ + IoRows();
  cudaStream_t s = stream_;
  const int ld = Ld(L), Ck = d.gdn_Ck(), Cv = d.gdn_Cv(), cd = 2 * Ck + Cv;
  gemm_->Run(s, hb_, d.dim, rows, L.in_proj, L.proj_rows, d.dim, proj_, ld);  // [rows, q | k | v | g | a | b]
  if (decode)
    CausalConvStep(s, proj_, ld, rows, cd, L.conv_w, nullptr, d.gdn_K, pl.f[0], slot, xbc_, cd, true);
  else
    CausalConvPrefill(s, proj_, ld, rows, cd, L.conv_w, nullptr, d.gdn_K, pl.f[0] + pslot * pl.per[0], xbc_, cd, true);
  const GdnParams p{d.gdn_Hk, d.gdn_Hv, d.gdn_dk, d.gdn_dv, L.A_log, L.dt_bias};
  GdnForward(s, p, rows, decode ? 1 : rows, xbc_, cd, proj_ + cd + Cv, ld, pl.f[1], slot, y_, Cv);  // [rows, Hv dv]
  RmsNormSiluGate(s, y_, Cv, proj_ + cd, ld, L.norm_w, hb_, rows, Cv, d.gdn_dv, c.gdn.norm_eps);
  gemm_->Run(s, hb_, Cv, rows, L.out_proj, d.dim, Cv, x_, d.dim, true);  // x += o_proj
}

void CudaRunner::Forward(int rows, bool decode, int pslot, int lrow0, int lrows, float* logits) {
  const ModelDims& d = m_.dims();
  const ModelConfig& c = m_.config();
  const int R = IoRows();
  const int* tok = d_io_;
  cudaStream_t s = stream_;
  Embed(s, tok, m_.embed(), x_, rows, d.dim);
  for (size_t l = 0; l < m_.layers().size(); ++l) {
    const DeviceLayer& L = m_.layers()[l];
    RmsNorm(s, x_, L.in_norm, hb_, rows, d.dim, c.norm_eps);  // [rows, dim]
    switch (L.kind) {
      case MixerKind::kAttention: AttentionLayer(L, pools_[l], rows); break;
      case MixerKind::kMamba2:
      case MixerKind::kDiscreteMamba2: SsdLayer(L, pools_[l], rows, decode, pslot); break;
      case MixerKind::kMamba3: Mamba3Layer(L, pools_[l], rows, decode); break;
      case MixerKind::kGatedDeltaNet: GdnLayer(L, pools_[l], rows, decode, pslot); break;
      case MixerKind::kOryx: break;  // refused at build (cuda_model.cc)
    }
    if (L.mlp_norm != nullptr) {
      RmsNorm(s, x_, L.mlp_norm, hb_, rows, d.dim, c.norm_eps);
      gemm_->Run(s, hb_, d.dim, rows, L.w_gate_up, 2 * d.hidden, d.dim, proj_, 2 * d.hidden);  // [rows, gate | up]
      SiluMul(s, proj_, hb2_, rows, d.hidden);
      gemm_->Run(s, hb2_, d.hidden, rows, L.w_down, d.dim, d.hidden, x_, d.dim, true);
    }
  }
  RmsNorm(s, x_ + size_t(lrow0) * d.dim, m_.final_norm(), hb_, lrows, d.dim, c.norm_eps);
  gemm_->Run(s, hb_, d.dim, lrows, m_.lm_head(), d.vocab, d.dim, logits, d.vocab);
  SampleTokens(s, logits, d.vocab, lrows, d.vocab, d_fio_, d_fio_ + R, d_io_ + 4 * R, d_fio_ + 2 * R, d_io_ + 3 * R);
}

}  // namespace subq::cuda
