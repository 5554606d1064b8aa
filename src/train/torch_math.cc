// Torch math of torch_math.h. Shapes: B batch, L tokens, H heads, P head dim, N state size, Q chunk
// length, c chunks.
#include "train/torch_math.h"

#include <cmath>
#include <limits>
#include <vector>

namespace subq::train {
namespace {

constexpr double kL2Eps = 1e-6;  // fla l2norm: x / sqrt(sum x^2 + eps), as the engine


// Rotate-half RoPE of t [B, L, heads, hd] at positions 0..L-1.
torch::Tensor Rope(const torch::Tensor& t, const torch::Tensor& inv_freq) {
  const int64_t L = t.size(1), hd = t.size(3);
  auto pos = torch::arange(L, t.options().dtype(AtLeastF32(t).scalar_type()));
  auto freqs = torch::outer(pos, inv_freq.to(t.device()));  // [L, hd/2]
  auto cos = freqs.cos().view({1, L, 1, hd / 2}), sin = freqs.sin().view({1, L, 1, hd / 2});
  auto t1 = t.narrow(-1, 0, hd / 2), t2 = t.narrow(-1, hd / 2, hd / 2);
  return torch::cat({t1 * cos - t2 * sin, t2 * cos + t1 * sin}, -1);
}

torch::Tensor CausalSoftmax(const torch::Tensor& q, const torch::Tensor& k, int64_t hd) {
  const int64_t L = q.size(2);
  auto s = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(hd));  // [B, H, L, L]
  auto mask = torch::triu(torch::ones({L, L}, q.options().dtype(torch::kBool)), 1);
  return torch::softmax(AtLeastF32(s).masked_fill(mask, -std::numeric_limits<double>::infinity()), -1);
}

}  // namespace

torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  // ATen's rms_norm is one fused kernel on CUDA when input and weight share a dtype (the f32 residual
  // stream); a bf16 autocast output against an f32 weight keeps the composite, which promotes to f32.
  if (x.scalar_type() == w.scalar_type()) return at::rms_norm(x, {x.size(-1)}, w, eps);
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

torch::Tensor SwiGlu(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& up,
                     const torch::Tensor& down) {
  return torch::linear(torch::silu(torch::linear(x, gate)) * torch::linear(x, up), down);
}

torch::Tensor SegSum(const torch::Tensor& a) {
  const int64_t T = a.size(-1);
  auto sizes = a.sizes().vec();
  sizes.push_back(T);
  auto x = a.unsqueeze(-1).expand(sizes);  // x[..., i, j] = a[i]
  auto strict = torch::tril(torch::ones({T, T}, a.options().dtype(torch::kBool)), -1);
  auto s = x.masked_fill(strict.logical_not(), 0.0).cumsum(-2);  // s[i, j] = a[j+1] + ... + a[i]
  auto lower = torch::tril(torch::ones({T, T}, a.options().dtype(torch::kBool)), 0);
  return s.masked_fill(lower.logical_not(), -std::numeric_limits<double>::infinity());
}

// Fewer passes than SegSum; |cumsum| stays small inside a chunk. Masked before exp so no inf reaches autograd.
torch::Tensor ExpSegSumFast(const torch::Tensor& a) {
  const int64_t T = a.size(-1);
  auto c = a.cumsum(-1);
  auto upper = torch::triu(torch::ones({T, T}, a.options().dtype(torch::kBool)), 1);
  return (c.unsqueeze(-1) - c.unsqueeze(-2)).masked_fill(upper, -std::numeric_limits<double>::infinity()).exp();
}

torch::Tensor CausalConv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  const int64_t L = x.size(1), K = w.size(2), C = x.size(2);
  auto y = torch::conv1d(x.transpose(1, 2), w, b, /*stride=*/1, /*padding=*/K - 1, /*dilation=*/1, /*groups=*/C);
  return y.narrow(2, 0, L).transpose(1, 2);  // [B, L, C]
}

torch::Tensor AtLeastF32(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf ? t.to(torch::kFloat32) : t;
}

torch::Tensor SsdChunked(const torch::Tensor& x, const torch::Tensor& loga_in, const torch::Tensor& Bm,
                         const torch::Tensor& Cm, int64_t chunk) {
  const torch::Tensor loga = AtLeastF32(loga_in);  // cumulative decays stay f32 under bf16 autocast
  const int64_t B = x.size(0), L = x.size(1), H = x.size(2), P = x.size(3), N = Bm.size(3);
  const int64_t Q = std::min<int64_t>(chunk, L), pad = (Q - L % Q) % Q, Lp = L + pad, c = Lp / Q;
  auto xp = pad ? torch::constant_pad_nd(x, {0, 0, 0, 0, 0, pad}) : x;
  auto ap = pad ? torch::constant_pad_nd(loga, {0, 0, 0, pad}) : loga;
  auto bp = pad ? torch::constant_pad_nd(Bm, {0, 0, 0, 0, 0, pad}) : Bm;
  auto cp = pad ? torch::constant_pad_nd(Cm, {0, 0, 0, 0, 0, pad}) : Cm;
  auto xc = xp.view({B, c, Q, H, P}).permute({0, 3, 1, 2, 4});  // [B, H, c, Q, P]
  auto bc = bp.view({B, c, Q, H, N}).permute({0, 3, 1, 2, 4});  // [B, H, c, Q, N]
  auto cc = cp.view({B, c, Q, H, N}).permute({0, 3, 1, 2, 4});  // [B, H, c, Q, N]
  auto ac = ap.view({B, c, Q, H}).permute({0, 3, 1, 2});        // [B, H, c, Q]
  auto acum = ac.cumsum(-1);                                    // [B, H, c, Q]
  // (1) intra-chunk: Y_diag = (C B^T * exp(segsum)) X
  auto y = torch::matmul(torch::matmul(cc, bc.transpose(-1, -2)) * ExpSegSumFast(ac), xc);  // [B, H, c, Q, P]
  if (c > 1) {
    // (2) state at the end of each chunk from its own tokens: sum_s exp(acum_last - acum_s) B_s^T X_s
    auto decay = (acum.narrow(-1, Q - 1, 1) - acum).exp();                                 // [B, H, c, Q]
    auto states = torch::matmul((bc * decay.unsqueeze(-1)).transpose(-1, -2), xc);         // [B, H, c, N, P]
    // (3) pass states across chunks: S_z = sum_{c' < z} exp(total decay of chunks c'..z-1) states_c'
    auto totals = torch::constant_pad_nd(acum.select(-1, Q - 1), {1, 0});                 // [B, H, c+1]
    auto all = torch::cat({torch::zeros({B, H, 1, N, P}, x.options()), states}, 2).view({B, H, c + 1, N * P});
    auto prev = torch::matmul(SegSum(totals).exp(), all).narrow(2, 0, c).view({B, H, c, N, P});
    // (4) contribution of the state entering each chunk
    y = y + torch::matmul(cc * acum.exp().unsqueeze(-1), prev);                             // [B, H, c, Q, P]
  }
  return y.permute({0, 2, 3, 1, 4}).reshape({B, Lp, H, P}).narrow(1, 0, L);  // [B, L, H, P]
}

torch::Tensor SsdMatrix(const torch::Tensor& loga, const torch::Tensor& Bm, const torch::Tensor& Cm) {
  auto scores = torch::matmul(Cm.permute({0, 2, 1, 3}), Bm.permute({0, 2, 3, 1}));  // [B, H, L, L]
  return scores * ExpSegSumFast(AtLeastF32(loga).permute({0, 2, 1}));
}

torch::Tensor SsdRecurrent(const torch::Tensor& x, const torch::Tensor& loga, const torch::Tensor& Bm,
                           const torch::Tensor& Cm) {
  const int64_t B = x.size(0), L = x.size(1), H = x.size(2), P = x.size(3), N = Bm.size(3);
  auto h = torch::zeros({B, H, P, N}, x.options());
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) {
    auto a = loga.select(1, t).exp().view({B, H, 1, 1});
    h = a * h + x.select(1, t).unsqueeze(-1) * Bm.select(1, t).unsqueeze(-2);  // [B, H, P, N]
    ys.push_back(torch::matmul(h, Cm.select(1, t).unsqueeze(-1)).squeeze(-1));  // [B, H, P]
  }
  return torch::stack(ys, 1);  // [B, L, H, P]
}

torch::Tensor L2Norm(const torch::Tensor& x) { return x * torch::rsqrt(x.pow(2).sum(-1, true) + kL2Eps); }

torch::Tensor GatedDeltaRule(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& g, const torch::Tensor& beta) {
  const int64_t B = q.size(0), L = q.size(1), H = q.size(2), dk = q.size(3), dv = v.size(3);
  auto S = torch::zeros({B, H, dk, dv}, v.options());
  std::vector<torch::Tensor> os;
  os.reserve(L);
  for (int64_t t = 0; t < L; ++t) {
    auto kt = k.select(1, t).unsqueeze(-1);                            // [B, H, dk, 1]
    S = S * g.select(1, t).exp().view({B, H, 1, 1});                   // decay
    auto pred = torch::matmul(S.transpose(-1, -2), kt).squeeze(-1);    // S^T k [B, H, dv]
    auto upd = beta.select(1, t).unsqueeze(-1) * (v.select(1, t) - pred);
    S = S + kt * upd.unsqueeze(-2);                                    // [B, H, dk, dv]
    os.push_back(torch::matmul(S.transpose(-1, -2), q.select(1, t).unsqueeze(-1)).squeeze(-1));  // [B, H, dv]
  }
  return torch::stack(os, 1);  // [B, L, H, dv]
}

torch::Tensor InvFreq(const AttentionConfig& a) {
  const int half = a.head_dim / 2;
  auto inv = torch::empty({half}, torch::kFloat64);
  const auto& rs = a.rope_scaling;
  for (int i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(a.rope_theta), -2.0 * i / a.head_dim);
    if (rs.type == "llama3") {
      const double orig = rs.original_max_position_embeddings, wavelen = 2 * M_PI / f;
      if (wavelen > orig / rs.low_freq_factor) {
        f /= rs.factor;
      } else if (wavelen >= orig / rs.high_freq_factor) {
        const double s = (orig / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - s) * f / rs.factor + s * f;
      }
    }
    inv[i] = f;
  }
  return inv.to(torch::kFloat32);
}

torch::Tensor AttentionProbs(const AttentionParams& p, const torch::Tensor& u, int64_t h0, int64_t nh) {
  const int64_t B = u.size(0), L = u.size(1), H = p.n_heads, Hkv = p.n_kv_heads, hd = p.head_dim;
  auto q = Rope(torch::linear(u, p.q.narrow(0, h0 * hd, nh * hd)).view({B, L, nh, hd}), p.inv_freq);  // [B, L, nh, hd]
  auto k = Rope(torch::linear(u, p.k).view({B, L, Hkv, hd}), p.inv_freq);                             // [B, L, Hkv, hd]
  auto kv_of = torch::div(torch::arange(h0, h0 + nh, torch::TensorOptions().dtype(torch::kInt64).device(u.device())),
                          H / Hkv, "floor");  // kv head of each query head
  k = k.index_select(2, kv_of);                                                                        // [B, L, nh, hd]
  return CausalSoftmax(q.transpose(1, 2), k.transpose(1, 2), hd);                                      // [B, nh, L, L]
}

torch::Tensor Attention(const AttentionParams& p, const torch::Tensor& u, torch::Tensor* probs) {
  const int64_t B = u.size(0), L = u.size(1), H = p.n_heads, Hkv = p.n_kv_heads, hd = p.head_dim;
  auto q = Rope(torch::linear(u, p.q).view({B, L, H, hd}), p.inv_freq).transpose(1, 2);                  // [B, H, L, hd]
  auto k = Rope(torch::linear(u, p.k).view({B, L, Hkv, hd}), p.inv_freq).transpose(1, 2).repeat_interleave(H / Hkv, 1);
  auto v = torch::linear(u, p.v).view({B, L, Hkv, hd}).transpose(1, 2).repeat_interleave(H / Hkv, 1);  // [B, H, L, hd]
  torch::Tensor o;
  if (probs) {
    *probs = CausalSoftmax(q, k, hd);  // [B, H, L, L]
    o = torch::matmul(probs->to(v.scalar_type()), v);
  } else {
    o = at::scaled_dot_product_attention(q.to(v.scalar_type()), k.to(v.scalar_type()), v, {}, 0.0, /*is_causal=*/true);
  }
  return torch::linear(o.transpose(1, 2).reshape({B, L, H * hd}), p.o);  // [B, L, D]
}

}  // namespace subq::train
