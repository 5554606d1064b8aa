// Mamba-3 on CUDA (cuda_ops.h; SPEC section 4, the CPU form in mixers/mamba3.cc): phase accumulation,
// per-token inputs (B/C norms, biases, rotation, dt, decay, trapezoid weight), the recurrence over each
// sequence's tokens with the state in registers, and the gated rank-summed output. f32 math and state.
#include <cstdio>
#include <cstdlib>

#include "ops/cuda/common.cuh"

namespace subq::cuda {
namespace {

constexpr float kPi = 3.14159265358979323846f;
constexpr float kTwoPi = 2.0f * kPi;
constexpr float kBcNormEps = 1e-5f, kOutNormEps = 1e-5f, kAFloor = 1e-4f;
constexpr int kThreads = 256;

// Column offsets of one in_proj row.
struct Cols {
  int x, B, C, dt, A, trap, angle;
  __host__ __device__ explicit Cols(const Mamba3Params& p) {
    const int di = p.H * p.P, bc = p.G * p.R * p.N;
    x = di, B = 2 * di, C = B + bc, dt = C + bc, A = dt + p.H, trap = A + p.H, angle = trap + p.H;
  }
};

// Scratch of `rows` rows: qk [rows, 2, R, H, N] (rotated q = C, then k = B; first, so float4 loads are
// aligned), y [rows, R, H, P] (pre-gate, with the D skip), phase [rows, H, NA], tok [rows, 3, H] (dt, A*dt,
// lambda); each part a multiple of 4 floats.
struct Scratch {
  static size_t Up4(size_t n) { return (n + 3) / 4 * 4; }
  // Offsets of y, phase, tok and the total, in floats.
  static void Offsets(const Mamba3Params& p, int rows, size_t* o_y, size_t* o_ph, size_t* o_tok, size_t* total) {
    const size_t r = rows;
    *o_y = Up4(r * 2 * p.R * p.H * p.N), *o_ph = *o_y + Up4(r * p.R * p.H * p.P);
    *o_tok = *o_ph + Up4(r * p.H * p.NA), *total = *o_tok + Up4(r * 3 * p.H);
  }
  Scratch(const Mamba3Params& p, int rows, float* base) {
    size_t o_y, o_ph, o_tok, total;
    Offsets(p, rows, &o_y, &o_ph, &o_tok, &total);
    qk = base, y = base + o_y, phase = base + o_ph, tok = base + o_tok;
  }
  float *qk, *y, *phase, *tok;
};

template <typename T>  // float or const float
__device__ __forceinline__ T* QkRow(T* qk, const Mamba3Params& p, int row, int which, int r, int h) {  // 0: q, 1: k
  return qk + (((static_cast<size_t>(row) * 2 + which) * p.R + r) * p.H + h) * p.N;
}

// Thread per (sequence, head, angle): Phi_t = Phi_{t-1} + dt_t theta_t, kept in [0, 2 pi).
__global__ void PhaseKernel(Mamba3Params p, int nseq, int seq_len, const float* proj, int ldp, float* phase_pool,
                            const int* slot, float* phase_rows) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x, per = p.H * p.NA;
  if (e >= nseq * per) return;
  const int j = e / per, hi = e % per, h = hi / p.NA, i = hi % p.NA, r0 = j * seq_len;
  const Cols o(p);
  float* ph_state = phase_pool + static_cast<size_t>(slot[r0]) * per + hi;
  float ph = *ph_state;
  for (int t = 0; t < seq_len; ++t) {
    const float* pr = proj + static_cast<size_t>(r0 + t) * ldp;
    const float dt = SoftplusF(pr[o.dt + h] + p.dt_bias[h]);
    const float a = ph + dt * (kPi * tanhf(pr[o.angle + i]));
    ph = a - kTwoPi * floorf(a / kTwoPi);
    phase_rows[static_cast<size_t>(r0 + t) * per + hi] = ph;
  }
  *ph_state = ph;
}

// Block per row: dt, A dt, lambda per head; RMS-normed B and C per (rank, group) in shared memory; then
// q, k = normed + bias, rotated by the row's phase.
__global__ void PrepareKernel(Mamba3Params p, const float* proj, int ldp, const float* phase_rows, float* tok,
                              float* qk) {
  extern __shared__ float bc[];  // [2, R, G, N]: normed B, then normed C
  const int row = blockIdx.x, tid = threadIdx.x;
  const Cols o(p);
  const float* pr = proj + static_cast<size_t>(row) * ldp;
  float* tr = tok + static_cast<size_t>(row) * 3 * p.H;
  for (int h = tid; h < p.H; h += blockDim.x) {
    const float dt = SoftplusF(pr[o.dt + h] + p.dt_bias[h]), dd = pr[o.A + h];
    const float f = dd >= 0.0f ? 1.0f + dd : 1.0f / (1.0f - dd);
    tr[h] = dt;
    tr[p.H + h] = fminf(-f, -kAFloor) * dt;
    tr[2 * p.H + h] = 1.0f / (1.0f + __expf(-pr[o.trap + h]));
  }
  const int segs = 2 * p.R * p.G, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
  for (int sg = warp; sg < segs; sg += nw) {
    const bool isC = sg >= p.R * p.G;
    const float* src = pr + (isC ? o.C : o.B) + (sg % (p.R * p.G)) * p.N;
    const float* w = isC ? p.C_norm : p.B_norm;
    float ss = 0.0f;
    for (int n = lane; n < p.N; n += 32) ss += src[n] * src[n];
    const float inv = rsqrtf(WarpSum(ss) / p.N + kBcNormEps);
    for (int n = lane; n < p.N; n += 32) bc[sg * p.N + n] = src[n] * inv * w[n];
  }
  __syncthreads();
  const int per = p.R * p.H * p.N, hpg = p.H / p.G;
  for (int e = tid; e < 2 * per; e += blockDim.x) {
    const int which = e / per, r = (e % per) / (p.H * p.N), h = (e / p.N) % p.H, n = e % p.N;  // which 0: q (C)
    const float* seg = bc + ((which == 0 ? p.R * p.G : 0) + r * p.G + h / hpg) * p.N;
    const float* bias = (which == 0 ? p.C_bias : p.B_bias) + (static_cast<size_t>(h) * p.R + r) * p.N;
    float v = seg[n] + bias[n];
    int i = -1, partner = 0;
    bool first = true;
    if (p.half_split) {
      if (n < p.NA) i = n, partner = n + p.N / 2;
      else if (n >= p.N / 2 && n < p.N / 2 + p.NA) i = n - p.N / 2, partner = i, first = false;
    } else if (n < 2 * p.NA) {
      i = n / 2, partner = n ^ 1, first = (n & 1) == 0;
    }
    if (i >= 0) {
      const float pv = seg[partner] + bias[partner];
      float sn, cs;
      sincosf(phase_rows[(static_cast<size_t>(row) * p.H + h) * p.NA + i], &sn, &cs);
      v = first ? v * cs - pv * sn : pv * sn + v * cs;
    }
    QkRow(qk, p, row, which, r, h)[n] = v;
  }
}

// Block (sequence, head, p tile): each thread owns 4 consecutive n (float4) of RPT rows p (N/4 threads
// per p). Token by token: S = alpha S + sum_r beta vp_r kp_r^T + gamma v_r k_r^T; y_r = S q_r + D v_r.
template <int RPT>
__global__ void __launch_bounds__(kThreads) ScanKernel(Mamba3Params p, int seq_len, const float* proj, int ldp,
                                                       Mamba3Pools st, const int* slot, const float* tok,
                                                       const float* qk, float* y) {
  const int j = blockIdx.x, h = blockIdx.y, tpr = p.N / 4, rpp = kThreads / tpr;
  const int p0 = blockIdx.z * rpp * RPT + threadIdx.x / tpr, n0 = (threadIdx.x % tpr) * 4, r0 = j * seq_len;
  const int sl = slot[r0], di = p.H * p.P;
  float4* Sg = reinterpret_cast<float4*>(st.ssm + (static_cast<size_t>(sl) * p.H + h) * p.P * p.N + n0);
  const float* xl = st.x_last + (static_cast<size_t>(sl) * p.H + h) * p.P;
  float4 S[RPT];
#pragma unroll
  for (int k = 0; k < RPT; ++k)
    S[k] = p0 + k * rpp < p.P ? Sg[static_cast<size_t>(p0 + k * rpp) * p.N / 4] : make_float4(0.f, 0.f, 0.f, 0.f);
  const float Dh = p.D[h];
  for (int t = 0; t < seq_len; ++t) {
    const int row = r0 + t;
    const float* tr = tok + static_cast<size_t>(row) * 3 * p.H;
    const float dt = tr[h], lam = tr[2 * p.H + h], alpha = __expf(tr[p.H + h]);
    const float beta = (1.0f - lam) * dt * alpha, gamma = lam * dt;
    const float* xr = proj + static_cast<size_t>(row) * ldp + di + h * p.P;
    const float* xp = t == 0 ? xl : xr - ldp;
    float xv[RPT], xpv[RPT];
#pragma unroll
    for (int k = 0; k < RPT; ++k) {
      const int pi = p0 + k * rpp;
      xv[k] = pi < p.P ? xr[pi] : 0.0f;
      xpv[k] = pi < p.P ? xp[pi] : 0.0f;
      S[k].x *= alpha, S[k].y *= alpha, S[k].z *= alpha, S[k].w *= alpha;
    }
    for (int r = 0; r < p.R; ++r) {
      const float4 kv = *reinterpret_cast<const float4*>(QkRow(qk, p, row, 1, r, h) + n0);
      const float4 kp = *reinterpret_cast<const float4*>(
          (t == 0 ? st.k_last + ((static_cast<size_t>(sl) * p.R + r) * p.H + h) * p.N : QkRow(qk, p, row - 1, 1, r, h)) +
          n0);
      const float* mx = p.mimo_x != nullptr ? p.mimo_x + (static_cast<size_t>(h) * p.R + r) * p.P : nullptr;
#pragma unroll
      for (int k = 0; k < RPT; ++k) {
        const int pi = p0 + k * rpp;
        const float m = (mx != nullptr && pi < p.P) ? mx[pi] : 1.0f;
        const float a = gamma * xv[k] * m, b = beta * xpv[k] * m;
        S[k].x += b * kp.x + a * kv.x;
        S[k].y += b * kp.y + a * kv.y;
        S[k].z += b * kp.z + a * kv.z;
        S[k].w += b * kp.w + a * kv.w;
      }
    }
    for (int r = 0; r < p.R; ++r) {
      const float4 q = *reinterpret_cast<const float4*>(QkRow(qk, p, row, 0, r, h) + n0);
      const float* mx = p.mimo_x != nullptr ? p.mimo_x + (static_cast<size_t>(h) * p.R + r) * p.P : nullptr;
#pragma unroll
      for (int k = 0; k < RPT; ++k) {
        const int pi = p0 + k * rpp;
        float yv = S[k].x * q.x + S[k].y * q.y + S[k].z * q.z + S[k].w * q.w;
        for (int off = tpr / 2; off > 0; off >>= 1) yv += __shfl_xor_sync(0xffffffffu, yv, off);
        if (pi < p.P && threadIdx.x % tpr == 0) {
          const float m = mx != nullptr ? mx[pi] : 1.0f;
          y[((static_cast<size_t>(row) * p.R + r) * p.H + h) * p.P + pi] = yv + Dh * xv[k] * m;
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < RPT; ++k)
    if (p0 + k * rpp < p.P) Sg[static_cast<size_t>(p0 + k * rpp) * p.N / 4] = S[k];
}

// Block per row: o[h, p] = sum_r mimo_o * norm(y_r)[h, p] * silu(z[h, p] * mimo_z) as bf16; the last row of
// each sequence leaves its k and x in the state (the trapezoid's previous token).
__global__ void OutputKernel(Mamba3Params p, int seq_len, const float* proj, int ldp, Mamba3Pools st, const int* slot,
                             const float* qk, const float* y, bf16* out) {
  extern __shared__ float inv[];  // [R, H]
  const int row = blockIdx.x, tid = threadIdx.x, di = p.H * p.P;
  const float* yr = y + static_cast<size_t>(row) * p.R * di;
  const float* z = proj + static_cast<size_t>(row) * ldp;
  if (p.out_norm != nullptr) {
    const int lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
    for (int rh = warp; rh < p.R * p.H; rh += nw) {
      float ss = 0.0f;
      for (int i = lane; i < p.P; i += 32) ss += yr[rh * p.P + i] * yr[rh * p.P + i];
      ss = WarpSum(ss);
      if (lane == 0) inv[rh] = rsqrtf(ss / p.P + kOutNormEps);
    }
    __syncthreads();
  }
  for (int e = tid; e < di; e += blockDim.x) {
    const int h = e / p.P, pi = e % p.P;
    const float zz = z[e];
    float acc = 0.0f;
    for (int r = 0; r < p.R; ++r) {
      float v = yr[(r * p.H + h) * p.P + pi];
      if (p.out_norm != nullptr) v *= inv[r * p.H + h] * p.out_norm[e];
      const size_t hr = (static_cast<size_t>(h) * p.R + r) * p.P + pi;
      const float mz = p.mimo_z != nullptr ? p.mimo_z[hr] : 1.0f, mo = p.mimo_o != nullptr ? p.mimo_o[hr] : 1.0f;
      acc += mo * v * SiluF(zz * mz);
    }
    out[static_cast<size_t>(row) * di + e] = __float2bfloat16(acc);
  }
  if (row % seq_len != seq_len - 1) return;
  const int sl = slot[row - (seq_len - 1)];
  for (int e = tid; e < di; e += blockDim.x) st.x_last[static_cast<size_t>(sl) * di + e] = z[di + e];
  const int kn = p.R * p.H * p.N;
  for (int e = tid; e < kn; e += blockDim.x) {
    const int r = e / (p.H * p.N), h = (e / p.N) % p.H, n = e % p.N;
    st.k_last[static_cast<size_t>(sl) * kn + e] = QkRow(qk, p, row, 1, r, h)[n];
  }
}

}  // namespace

size_t Mamba3ScratchFloats(const Mamba3Params& p, int rows) {
  size_t o_y, o_ph, o_tok, total;
  Scratch::Offsets(p, rows, &o_y, &o_ph, &o_tok, &total);
  return total;
}

void Mamba3Forward(cudaStream_t s, const Mamba3Params& p, int rows, int seq_len, const float* proj, int ldp,
                   const Mamba3Pools& st, const int* slot, bf16* out, float* scratch) {
  if (rows == 0) return;
  const int tpr = p.N / 4;
  if (p.N % 4 != 0 || tpr > 32 || (tpr & (tpr - 1)) != 0 || p.NA < 1 || p.H % p.G != 0 || seq_len < 1 ||
      rows % seq_len != 0) {
    std::fprintf(stderr, "Mamba3Forward: unsupported shape (N %d, NA %d, H %d, G %d, rows %d, seq_len %d, ldp %d)\n",
                 p.N, p.NA, p.H, p.G, rows, seq_len, ldp);
    std::abort();
  }
  const Scratch sc(p, rows, scratch);
  const int nseq = rows / seq_len, rpp = kThreads / tpr;
  PhaseKernel<<<CeilDiv(static_cast<long>(nseq) * p.H * p.NA, 128), 128, 0, s>>>(p, nseq, seq_len, proj, ldp, st.phase,
                                                                                  slot, sc.phase);
  SUBQ_CUDA_LAUNCH_CHECK();
  PrepareKernel<<<rows, kThreads, sizeof(float) * 2 * p.R * p.G * p.N, s>>>(p, proj, ldp, sc.phase, sc.tok, sc.qk);
  SUBQ_CUDA_LAUNCH_CHECK();
  // Few rows (decode at small batch, or one prefill): spread each head over more blocks.
  if (nseq >= 16) {
    ScanKernel<4><<<dim3(nseq, p.H, CeilDiv(p.P, rpp * 4)), kThreads, 0, s>>>(p, seq_len, proj, ldp, st, slot, sc.tok,
                                                                              sc.qk, sc.y);
  } else {
    ScanKernel<1><<<dim3(nseq, p.H, CeilDiv(p.P, rpp)), kThreads, 0, s>>>(p, seq_len, proj, ldp, st, slot, sc.tok,
                                                                         sc.qk, sc.y);
  }
  SUBQ_CUDA_LAUNCH_CHECK();
  OutputKernel<<<rows, kThreads, sizeof(float) * p.R * p.H, s>>>(p, seq_len, proj, ldp, st, slot, sc.qk, sc.y, out);
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
