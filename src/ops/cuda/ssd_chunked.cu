// SSD chunked prefill of one sequence on tensor cores (SPEC sections 2-3): chunk cumsum, chunk states, state
// passing, chunk scan. The three products of the chunk algorithm (C B^T masked by the segsum decay, its product
// with X plus the readout C S_prev^T, and the chunk states X^T (B * decay)) run as bf16 mma.sync m16n8k16 tiles
// with f32 accumulation; decays, cumsums and the state recurrence across chunks stay f32, the chunk states
// between kernels are bf16. A block works on one chunk and several heads of one group: B and C are loaded,
// and C B^T computed, once for all of them (G = 1: once per chunk for the whole layer).
//
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, q = 2 (lane % 4)): A rows g and g + 8, cols q, q + 1
// and q + 8, q + 9; B rows (k) q, q + 1 and q + 8, q + 9 of col g; accumulators rows g, g + 8, cols q, q + 1.
// Fragments come from shared memory through ldmatrix: C, B (for C B^T) and S_prev with k contiguous, x and B
// (for the chunk states) as they arrive, [token][.], through ldmatrix.trans. Rows padded by 8 bf16 put the 8
// rows of each 8x8 matrix in different banks.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "ops/cuda/ssd_common.cuh"

namespace subq::cuda {
namespace {

constexpr int Q = kSsdChunk;  // tokens per chunk
constexpr int kStateThreads = 256, kScanThreads = 256;  // 8 warps each

__device__ __forceinline__ uint32_t Pack(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ void St32(bf16* p, uint32_t v) { *reinterpret_cast<uint32_t*>(p) = v; }

// d[16x8] += a[16x16] b[16x8], bf16 inputs, f32 accumulators.
__device__ __forceinline__ void Mma(float* d, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// Fragments through ldmatrix (8x8 b16 matrices, lane i of each 8 giving a 16-byte row address; thread t
// receives row t / 4, cols 2 (t % 4).. of each: the mma operand layout). Rows are 16-byte aligned (ld % 8 == 0).
__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// A fragment: rows m0.., cols k0.. of a [m][k] tile with row stride ld.
__device__ __forceinline__ void LoadA(uint32_t* a, const bf16* t, int ld, int m0, int k0, int lane) {
  const bf16* r = t + (m0 + (lane & 15)) * ld + k0 + (lane >> 4) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(SmemAddr(r)));
}
// B fragment: k0.. x n0.. of a tile stored [n][k] with row stride ld.
__device__ __forceinline__ void LoadB(uint32_t* b, const bf16* t, int ld, int n0, int k0, int lane) {
  const bf16* r = t + (n0 + (lane & 7)) * ld + k0 + ((lane >> 3) & 1) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(b[0]), "=r"(b[1]) : "r"(SmemAddr(r)));
}
// B fragments of the two n8 tiles n0.. and n0 + 8.. (b[0..1], b[2..3]).
__device__ __forceinline__ void LoadB2(uint32_t* b, const bf16* t, int ld, int n0, int k0, int lane) {
  const int mi = lane >> 3;
  const bf16* r = t + (n0 + (lane & 7) + (mi >> 1) * 8) * ld + k0 + (mi & 1) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(SmemAddr(r)));
}
// A fragment (rows m0.., cols k0..) of a tile stored transposed, [k][m] with row stride ld (ldmatrix.trans).
__device__ __forceinline__ void LoadAT(uint32_t* a, const bf16* t, int ld, int m0, int k0, int lane) {
  const int mi = lane >> 3;
  const bf16* r = t + (k0 + (lane & 7) + (mi >> 1) * 8) * ld + m0 + (mi & 1) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(SmemAddr(r)));
}
// B fragments of a tile stored [k][n] (row stride ld): one n8 tile n0.., or two (n0.., n0 + 8..).
__device__ __forceinline__ void LoadBT(uint32_t* b, const bf16* t, int ld, int n0, int k0, int lane) {
  const bf16* r = t + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0;
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(b[0]), "=r"(b[1])
               : "r"(SmemAddr(r)));
}
__device__ __forceinline__ void LoadBT2(uint32_t* b, const bf16* t, int ld, int n0, int k0, int lane) {
  const int mi = lane >> 3;
  const bf16* r = t + (k0 + (lane & 7) + (mi & 1) * 8) * ld + n0 + (mi >> 1) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(SmemAddr(r)));
}
// acc[j] += a * B tile (n0 + 8 j..) for j < NT; B stored [n][k] (MmaTiles) or [k][n] (MmaTilesT).
template <int NT>
__device__ __forceinline__ void MmaTilesT(float (*acc)[4], const uint32_t* a, const bf16* t, int ld, int n0, int k0,
                                          int lane) {
#pragma unroll
  for (int j = 0; j + 1 < NT; j += 2) {
    uint32_t b[4];
    LoadBT2(b, t, ld, n0 + 8 * j, k0, lane);
    Mma(acc[j], a, b);
    Mma(acc[j + 1], a, b + 2);
  }
  if constexpr (NT % 2 == 1) {
    uint32_t b[2];
    LoadBT(b, t, ld, n0 + 8 * (NT - 1), k0, lane);
    Mma(acc[NT - 1], a, b);
  }
}
template <int NT>
__device__ __forceinline__ void MmaTiles(float (*acc)[4], const uint32_t* a, const bf16* t, int ld, int n0, int k0,
                                         int lane) {
#pragma unroll
  for (int j = 0; j + 1 < NT; j += 2) {
    uint32_t b[4];
    LoadB2(b, t, ld, n0 + 8 * j, k0, lane);
    Mma(acc[j], a, b);
    Mma(acc[j + 1], a, b + 2);
  }
  if constexpr (NT % 2 == 1) {
    uint32_t b[2];
    LoadB(b, t, ld, n0 + 8 * (NT - 1), k0, lane);
    Mma(acc[NT - 1], a, b);
  }
}

// 2^v (MUFU ex2; -inf -> 0). The cumsums are kept in log2 units, so every decay is one ex2.
__device__ __forceinline__ float Ex2(float v) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
  return r;
}
constexpr float kLog2e = 1.4426950408889634f;

__host__ __device__ constexpr int RoundUp(int v, int m) { return (v + m - 1) / m * m; }

// Heads [h0, h1) of group g handled by block row blockIdx.y (hb heads per block, blocks never span groups).
struct HeadRange {
  int h0, h1, g;
};
__device__ __forceinline__ HeadRange Heads(const SsdParams& p, int hb) {
  const int hg = p.H / p.G, per_g = (hg + hb - 1) / hb, g = blockIdx.y / per_g;
  const int h0 = g * hg + (blockIdx.y % per_g) * hb;
  return {h0, min(h0 + hb, (g + 1) * hg), g};
}

// Block (chunk, head): per-token decay and the inclusive cumsum of loga within the chunk, in log2 units
// (cum = log2e * sum loga); Q threads.
__global__ void ChunkCumsumKernel(SsdParams p, int L, const float* dt, int lddt, float* cum, float* xsv) {
  const int ch = blockIdx.x, h = blockIdx.y, t = ch * Q + threadIdx.x;
  __shared__ float s[Q];
  float loga = 0.0f, xs = 0.0f;
  if (t < L) DecayOf(p, h, dt[static_cast<size_t>(t) * lddt + h], &loga, &xs);
  s[threadIdx.x] = loga * kLog2e;
  __syncthreads();
  for (int o = 1; o < Q; o <<= 1) {  // Hillis-Steele scan
    const float v = threadIdx.x >= o ? s[threadIdx.x - o] : 0.0f;
    __syncthreads();
    s[threadIdx.x] += v;
    __syncthreads();
  }
  if (t < L) {
    cum[static_cast<size_t>(h) * L + t] = s[threadIdx.x];
    xsv[static_cast<size_t>(h) * L + t] = xs;
  }
}

// Block (chunk, head group): chunk state [P, N] = sum_s 2^(cum_last - cum_s) xs_s x_s B_s^T, as bf16.
// Shared, both [s][.] (the products read them transposed through ldmatrix.trans): B [Q][Np + 8] (once), then
// per head X * weight [Q][PR + 8] (cols >= P stay zero) and the weights [Q]. Warp item: 16 rows p x 32 cols n.
template <int P_>
__global__ void __launch_bounds__(kStateThreads) ChunkStateKernel(SsdParams p, int L, int hb, const float* x, int ldx,
                                                                  const float* b, int ldbc, const float* cum,
                                                                  const float* xsv, bf16* cst) {
  constexpr int PR = RoundUp(P_, 16), MT = PR / 16, ldp = PR + 8;
  extern __shared__ __align__(16) unsigned char smraw[];
  const int N = p.N, Np = RoundUp(N, 32), ldn = Np + 8, ch = blockIdx.x, t0 = ch * Q, n = min(Q, L - t0);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const HeadRange hr = Heads(p, hb);
  bf16* Bs = reinterpret_cast<bf16*>(smraw);                // [Q][ldn]
  bf16* Xs = Bs + Q * ldn;                                  // [Q][ldp]
  float* wgt = reinterpret_cast<float*>(Xs + Q * ldp);      // [Q]
#pragma unroll 4
  for (int e = threadIdx.x; e < (Np / 2) * Q; e += kStateThreads) {
    const int s = e / (Np / 2), nn = 2 * (e % (Np / 2));
    const float* src = b + static_cast<size_t>(t0 + s) * ldbc + hr.g * N + nn;
    St32(Bs + s * ldn + nn, nn < N && s < n ? Pack(src[0], src[1]) : 0u);  // N even
  }
  if constexpr (PR > P_)
    for (int e = threadIdx.x; e < Q * (PR - P_); e += kStateThreads)
      Xs[(e / (PR - P_)) * ldp + P_ + e % (PR - P_)] = __float2bfloat16(0.0f);
  const int items = MT * (Np / 32);
  for (int h = hr.h0; h < hr.h1; ++h) {
    const float* hc = cum + static_cast<size_t>(h) * L + t0;
    const float* hx = xsv + static_cast<size_t>(h) * L + t0;
    const float last = hc[n - 1];
    for (int s = threadIdx.x; s < Q; s += kStateThreads) wgt[s] = s < n ? Ex2(last - hc[s]) * hx[s] : 0.0f;
    __syncthreads();
    // All of a thread's loads issue before its stores (the trip count is a constant).
#pragma unroll
    for (int e = threadIdx.x; e < Q * (P_ / 2); e += kStateThreads) {
      const int s = e / (P_ / 2), pp = 2 * (e % (P_ / 2));
      const float* src = x + static_cast<size_t>(t0 + s) * ldx + h * P_ + pp;
      St32(Xs + s * ldp + pp, s < n ? Pack(src[0] * wgt[s], src[1] * wgt[s]) : 0u);
    }
    __syncthreads();
    bf16* out = cst + (static_cast<size_t>(ch) * p.H + h) * P_ * N;
    for (int it = w; it < items; it += kStateThreads / 32) {
      const int m0 = 16 * (it % MT), nb = 32 * (it / MT);
      float acc[4][4] = {};
#pragma unroll
      for (int kb = 0; kb < Q / 16; ++kb) {
        uint32_t a[4];
        LoadAT(a, Xs, ldp, m0, 16 * kb, lane);
        MmaTilesT<4>(acc, a, Bs, ldn, nb, 16 * kb, lane);
      }
      const int r = m0 + (lane >> 2);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = nb + 8 * j + (lane & 3) * 2;
        if (col < N) {
          if (r < P_) St32(out + r * N + col, Pack(acc[j][0], acc[j][1]));
          if (r + 8 < P_) St32(out + (r + 8) * N + col, Pack(acc[j][2], acc[j][3]));
        }
      }
    }
    __syncthreads();
  }
}

// Thread per four state elements: S_c = 2^(chunk sum) S_{c-1} + chunkstate_c (f32); leaves in cst[c] the state
// entering chunk c (bf16) and the final state in `state` (f32). kAhead chunks (8 bytes each) are loaded before
// any is used, so the recurrence waits one memory round trip per kAhead chunks.
constexpr int kAhead = 8;
__device__ __forceinline__ float4 Bf4(uint2 v) {
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__global__ void __launch_bounds__(256, 4) StatePassKernel(SsdParams p, int L, int nc, const float* __restrict__ cum, uint2* __restrict__ cst,
                                float4* __restrict__ state) {
  const size_t per4 = static_cast<size_t>(p.H) * p.P * p.N / 4;
  const size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (e >= per4) return;
  const int h = static_cast<int>(4 * e / (static_cast<size_t>(p.P) * p.N));
  float4 S = state[e];
  for (int c0 = 0; c0 < nc; c0 += kAhead) {
    uint2 cs[kAhead];
    float decay[kAhead];
#pragma unroll
    for (int k = 0; k < kAhead; ++k) {
      const int ch = c0 + k;
      if (ch < nc) {
        cs[k] = cst[ch * per4 + e];
        decay[k] = Ex2(cum[static_cast<size_t>(h) * L + min(L, (ch + 1) * Q) - 1]);
      }
    }
#pragma unroll
    for (int k = 0; k < kAhead; ++k)
      if (c0 + k < nc) {
        uint2 o;
        o.x = Pack(S.x, S.y);
        o.y = Pack(S.z, S.w);
        cst[(c0 + k) * per4 + e] = o;
        const float4 v = Bf4(cs[k]);
        S.x = decay[k] * S.x + v.x;
        S.y = decay[k] * S.y + v.y;
        S.z = decay[k] * S.z + v.z;
        S.w = decay[k] * S.w + v.w;
      }
  }
  state[e] = S;
}

// cp.async copies (global -> shared, bypassing registers): 4 bytes (zero-filled when !ok) or 16 bytes.
__device__ __forceinline__ void Cp4(void* dst, const void* src, bool ok) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
               "l"(src), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void Cp16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
               "l"(src));
}
__device__ __forceinline__ void CpCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int K>
__device__ __forceinline__ void CpWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(K));
}

// Shared layout of the chunk scan (bf16 unless noted): C [Q][ldk]; B [Q][ldk], later S_prev buffer 1; S_prev
// buffer 0 [P][ldk]; X [Q][P + 8]; raw x f32 [2][Q][P + 8]; raw cum, xs f32 [2][2Q]; cum, xs f32 [2Q].
struct ScanSmem {
  int ldk;
  size_t c, b, s0, xt, xraw, craw, cm, total;
  __host__ __device__ ScanSmem(int P, int N) : ldk(RoundUp(N, 32) + 8) {
    c = 0;
    b = c + sizeof(bf16) * Q * ldk;
    s0 = b + sizeof(bf16) * Q * ldk;
    xt = s0 + sizeof(bf16) * P * ldk;
    xraw = xt + sizeof(bf16) * Q * (P + 8);
    craw = xraw + sizeof(float) * 2 * Q * (P + 8);
    cm = craw + sizeof(float) * 4 * Q;
    total = cm + sizeof(float) * 2 * Q;
  }
};

// Block (chunk, head group), 8 warps: warp w owns rows 16 w.. of the chunk and all P output columns (CH = 1
// column group; 16 warps splitting the columns in two, each building the same scores, measured 3% slower at
// L 32k: NOTES.md). C B^T for its rows stays in registers across the heads (G shared); per head
// Y = 2^cum_l C S_prev^T + (C B^T * 2^(cum_l - cum_s) xs_s, causal) X + D x, the masked scores built straight
// from the C B^T accumulators into A fragments. The next head's x, S_prev and decays are copied in (cp.async)
// while the current head computes.
template <int P_>
__global__ void __launch_bounds__(kScanThreads, 1)
    ChunkScanKernel(SsdParams p, int L, int hb, const float* x, int ldx, bool x16, const float* b, const float* c,
                    int ldbc, const float* cum, const float* xsv, const bf16* cst, float* y, int ldy, bool y8) {
  constexpr int CH = 1, NT = P_ / 8;  // one column group: n8 tiles per warp
  extern __shared__ __align__(16) unsigned char smraw[];
  const int N = p.N, Np = RoundUp(N, 32), ch = blockIdx.x, t0 = ch * Q, n = min(Q, L - t0);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, q = (lane & 3) * 2;
  const HeadRange hr = Heads(p, hb);
  const ScanSmem lay(P_, N);
  const int ldk = lay.ldk;
  bf16* Cs = reinterpret_cast<bf16*>(smraw + lay.c);
  bf16* Bs = reinterpret_cast<bf16*>(smraw + lay.b);
  bf16* S0 = reinterpret_cast<bf16*>(smraw + lay.s0);  // S_prev buffer 0; buffer 1 is B's space
  constexpr int XS = P_ + 8;  // row stride of X and raw x (rows 16-byte aligned, epilogue reads 2-way at most)
  bf16* Xs = reinterpret_cast<bf16*>(smraw + lay.xt);
  float* xraw = reinterpret_cast<float*>(smraw + lay.xraw);  // [2][Q][XS]
  float* craw = reinterpret_cast<float*>(smraw + lay.craw);  // [2][cum Q | xs Q]
  float* cm = reinterpret_cast<float*>(smraw + lay.cm);
  float* wx = cm + Q;
  // Copies head h's x rows, S_prev and decays into buffer k.
  auto prefetch = [&](int h, int k) {
    float* xr = xraw + k * Q * XS;
    if (x16) {
#pragma unroll 4
      for (int e = threadIdx.x; e < Q * (P_ / 4); e += kScanThreads) {
        const int s = e / (P_ / 4), pp = 4 * (e % (P_ / 4));
        const float* src = x + static_cast<size_t>(t0 + min(s, n - 1)) * ldx + h * P_ + pp;
        Cp16(xr + s * XS + pp, src);  // rows s >= n hold copies of row n - 1: never used
      }
    } else {
#pragma unroll 4
      for (int e = threadIdx.x; e < Q * P_; e += kScanThreads) {
        const int s = e / P_, pp = e % P_;
        Cp4(xr + s * XS + pp, x + static_cast<size_t>(t0 + min(s, n - 1)) * ldx + h * P_ + pp, s < n);
      }
    }
    const bf16* sp = cst + (static_cast<size_t>(ch) * p.H + h) * P_ * N;
    for (int e = threadIdx.x; e < P_ * (N / 8); e += kScanThreads) {
      const int pp = e / (N / 8), nn = 8 * (e % (N / 8));
      Cp16((k ? Bs : S0) + pp * ldk + nn, sp + pp * N + nn);
    }
    for (int s = threadIdx.x; s < 2 * Q; s += kScanThreads) {
      const int t = min(s % Q, n - 1);
      Cp4(craw + k * 2 * Q + s, (s < Q ? cum : xsv) + static_cast<size_t>(h) * L + t0 + t, true);
    }
    CpCommit();
  };
  prefetch(hr.h0, 0);
#pragma unroll 4
  for (int e = threadIdx.x; e < (Np / 2) * Q; e += kScanThreads) {
    const int s = e / (Np / 2), nn = 2 * (e % (Np / 2));
    const size_t off = static_cast<size_t>(t0 + s) * ldbc + hr.g * N + nn;
    const bool ok = s < n && nn < N;  // N even
    St32(Cs + s * ldk + nn, ok ? Pack(c[off], c[off + 1]) : 0u);
    St32(Bs + s * ldk + nn, ok ? Pack(b[off], b[off + 1]) : 0u);
  }
  // S_prev pad columns (N..Np) of both buffers stay zero.
  for (int e = threadIdx.x; e < P_ * (Np - N); e += kScanThreads)
    S0[(e / (Np - N)) * ldk + N + e % (Np - N)] = __float2bfloat16(0.0f);
  __syncthreads();
  const int rt = w & 7, r0 = 16 * rt, ph = w >> 3, pc0 = ph * (P_ / CH), l0 = r0 + g, l1 = l0 + 8;
  float cb[Q / 8][4];
#pragma unroll
  for (int j = 0; j < Q / 8; ++j) cb[j][0] = cb[j][1] = cb[j][2] = cb[j][3] = 0.0f;
  for (int kb = 0; kb < Np / 16; ++kb) {
    uint32_t a[4];
    LoadA(a, Cs, ldk, r0, 16 * kb, lane);
#pragma unroll
    for (int i = 0; i < Q / 16; ++i)
      if (i <= rt) {  // causal: columns s <= r0 + 15 only
        uint32_t bb[4];
        LoadB2(bb, Bs, ldk, 16 * i, 16 * kb, lane);
        Mma(cb[2 * i], a, bb);
        Mma(cb[2 * i + 1], a, bb + 2);
      }
  }
  __syncthreads();  // B's space becomes S_prev buffer 1
  for (int e = threadIdx.x; e < P_ * (Np - N); e += kScanThreads)
    Bs[(e / (Np - N)) * ldk + N + e % (Np - N)] = __float2bfloat16(0.0f);
  for (int h = hr.h0, k = 0; h < hr.h1; ++h, k ^= 1) {
    if (h + 1 < hr.h1) {
      prefetch(h + 1, k ^ 1);
      CpWait<1>();
    } else {
      CpWait<0>();
    }
    __syncthreads();
    const float* xr = xraw + k * Q * XS;
#pragma unroll 4
    for (int e = threadIdx.x; e < Q * (P_ / 2); e += kScanThreads) {
      const int s = e / (P_ / 2), pp = 2 * (e % (P_ / 2));
      const float2 v = *reinterpret_cast<const float2*>(xr + s * XS + pp);
      St32(Xs + s * XS + pp, s < n ? Pack(v.x, v.y) : 0u);
    }
    // cm: cum (log2 units; padded tokens repeat the last); wx = cum - log2 xs, so that the score weight
    // 2^(cum_l - cum_s) xs_s is one ex2 (+inf for padded tokens and xs == 0: weight 0).
    for (int s = threadIdx.x; s < Q; s += kScanThreads) {
      const float cv = craw[k * 2 * Q + s], xv = craw[k * 2 * Q + Q + s];
      cm[s] = cv;
      wx[s] = s < n && xv > 0.0f ? cv - __log2f(xv) : INFINITY;
    }
    __syncthreads();
    if (ph < CH) {
      const bf16* Ss = k ? Bs : S0;
      float acc[NT][4] = {};
      for (int kb = 0; kb < Np / 16; ++kb) {
        uint32_t a[4];
        LoadA(a, Cs, ldk, r0, 16 * kb, lane);
        MmaTiles<NT>(acc, a, Ss, ldk, pc0, 16 * kb, lane);
      }
      const float c0 = cm[l0], c1 = cm[l1], e0 = Ex2(c0), e1 = Ex2(c1);
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        acc[j][0] *= e0;
        acc[j][1] *= e0;
        acc[j][2] *= e1;
        acc[j][3] *= e1;
      }
#pragma unroll
      for (int kb = 0; kb < Q / 16; ++kb)
        if (kb <= rt) {
          uint32_t a[4];
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int j = 2 * kb + half, s = 8 * j + q;
            const float2 wv = *reinterpret_cast<const float2*>(wx + s);  // s even
            float m00 = cb[j][0] * Ex2(c0 - wv.x), m01 = cb[j][1] * Ex2(c0 - wv.y);
            float m10 = cb[j][2] * Ex2(c1 - wv.x), m11 = cb[j][3] * Ex2(c1 - wv.y);
            if (kb == rt) {  // the diagonal tile: causal mask (s > l may have overflowed to inf or NaN)
              m00 = s <= l0 ? m00 : 0.0f;
              m01 = s + 1 <= l0 ? m01 : 0.0f;
              m10 = s <= l1 ? m10 : 0.0f;
              m11 = s + 1 <= l1 ? m11 : 0.0f;
            }
            a[2 * half] = Pack(m00, m01);
            a[2 * half + 1] = Pack(m10, m11);
          }
          MmaTilesT<NT>(acc, a, Xs, XS, pc0, 16 * kb, lane);
        }
      const float D = p.D[h];
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int col = pc0 + 8 * j + q;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int l = r ? l1 : l0;
          if (l < n) {
            const float2 xv = *reinterpret_cast<const float2*>(xr + l * XS + col);
            const float2 o = make_float2(acc[j][2 * r] + D * xv.x, acc[j][2 * r + 1] + D * xv.y);
            float* yr = y + static_cast<size_t>(t0 + l) * ldy + h * P_ + col;
            if (y8) {
              *reinterpret_cast<float2*>(yr) = o;
            } else {
              yr[0] = o.x;
              yr[1] = o.y;
            }
          }
        }
      }
    }
    __syncthreads();
  }
}

size_t StateSmem(int P, int N) {
  return sizeof(bf16) * Q * (RoundUp(N, 32) + 8 + RoundUp(P, 16) + 8) + sizeof(float) * Q;
}
size_t Round4(size_t v) { return (v + 3) / 4 * 4; }

int SmCount() {
  static const int n = [] {
    int d = 0, v = 0;
    SUBQ_CUDA_CHECK(cudaGetDevice(&d));
    SUBQ_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, d));
    return v;
  }();
  return n;
}

// Heads per block: the hb in [1, 16] with the fewest (waves of `slots` resident blocks) x (hb + the block's
// fixed cost in heads: loading B (and C, computing C B^T)); e.g. the scan at L 2k: 128 blocks of 10 heads.
int PickHeads(int nc, int G, int hg, int slots, double fixed) {
  int best = 1;
  double best_t = 1e30;
  for (int hb = 1; hb <= std::min(hg, 16); ++hb) {
    const long blocks = static_cast<long>(nc) * G * CeilDiv(hg, hb);
    const double t = static_cast<double>(CeilDiv(blocks, slots)) * (hb + fixed);
    if (t < best_t) best = hb, best_t = t;
  }
  return best;
}

template <int P_>
void Launch(cudaStream_t s, const SsdParams& p, int L, const float* x, int ldx, const float* b, const float* c,
            int ldbc, const float* dt, int lddt, float* state, float* y, int ldy, float* scratch) {
  const int nc = CeilDiv(L, Q), hg = p.H / p.G;
  float* cum = scratch;
  float* xsv = cum + static_cast<size_t>(p.H) * L;
  bf16* cst = reinterpret_cast<bf16*>(scratch + Round4(2 * static_cast<size_t>(p.H) * L));
  // The scan runs one block per SM, the chunk states four.
  const int hb = PickHeads(nc, p.G, hg, SmCount(), 1.5), hbs = PickHeads(nc, p.G, hg, 4 * SmCount(), 1.0);
  const dim3 grid(nc, p.G * CeilDiv(hg, hb)), grid_s(nc, p.G * CeilDiv(hg, hbs));
  ChunkCumsumKernel<<<dim3(nc, p.H), Q, 0, s>>>(p, L, dt, lddt, cum, xsv);
  SUBQ_CUDA_LAUNCH_CHECK();
  const size_t st_smem = StateSmem(P_, p.N), sc_smem = ScanSmem(P_, p.N).total;
  int dev = 0, max_smem = 0;
  SUBQ_CUDA_CHECK(cudaGetDevice(&dev));
  SUBQ_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (sc_smem > static_cast<size_t>(max_smem)) {
    std::fprintf(stderr, "SsdChunkedScan: head dim %d with state size %d needs %zu bytes of shared memory (%d)\n", P_,
                 p.N, sc_smem, max_smem);
    std::abort();
  }
  SUBQ_CUDA_CHECK(cudaFuncSetAttribute(ChunkStateKernel<P_>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(st_smem)));
  SUBQ_CUDA_CHECK(cudaFuncSetAttribute(ChunkScanKernel<P_>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(sc_smem)));
  ChunkStateKernel<P_><<<grid_s, kStateThreads, st_smem, s>>>(p, L, hbs, x, ldx, b, ldbc, cum, xsv, cst);
  SUBQ_CUDA_LAUNCH_CHECK();
  const size_t per4 = static_cast<size_t>(p.H) * p.P * p.N / 4;
  StatePassKernel<<<CeilDiv(static_cast<long>(per4), 256), 256, 0, s>>>(
      p, L, nc, cum, reinterpret_cast<uint2*>(cst), reinterpret_cast<float4*>(state));
  SUBQ_CUDA_LAUNCH_CHECK();
    const bool x16 = reinterpret_cast<uintptr_t>(x) % 16 == 0 && ldx % 4 == 0;
  const bool y8 = reinterpret_cast<uintptr_t>(y) % 8 == 0 && ldy % 2 == 0;
  ChunkScanKernel<P_><<<grid, kScanThreads, sc_smem, s>>>(p, L, hb, x, ldx, x16, b, c, ldbc, cum, xsv, cst, y, ldy,
                                                         y8);
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace

size_t SsdScratchFloats(const SsdParams& p, int L) {
  const size_t nc = CeilDiv(L, Q);
  return Round4(2 * static_cast<size_t>(p.H) * L) + (nc * p.H * p.P * p.N + 1) / 2;
}

void SsdChunkedScan(cudaStream_t s, const SsdParams& p, int L, const float* x, int ldx, const float* b,
                    const float* c, int ldbc, const float* dt, int lddt, float* state, float* y, int ldy,
                    float* scratch) {
  if (L == 0) return;
  if (p.N % 8 != 0 || p.N > 256 || p.G <= 0 || p.H % p.G != 0) {
    std::fprintf(stderr, "SsdChunkedScan: state size %d / groups %d unsupported (need N %% 8 == 0, N <= 256)\n", p.N,
                 p.G);
    std::abort();
  }
  if (reinterpret_cast<uintptr_t>(state) % 16 != 0 || reinterpret_cast<uintptr_t>(scratch) % 16 != 0) {
    std::fprintf(stderr, "SsdChunkedScan: state and scratch must be 16-byte aligned\n");
    std::abort();
  }
  switch (p.P) {
    case 8: return Launch<8>(s, p, L, x, ldx, b, c, ldbc, dt, lddt, state, y, ldy, scratch);
    case 16: return Launch<16>(s, p, L, x, ldx, b, c, ldbc, dt, lddt, state, y, ldy, scratch);
    case 32: return Launch<32>(s, p, L, x, ldx, b, c, ldbc, dt, lddt, state, y, ldy, scratch);
    case 64: return Launch<64>(s, p, L, x, ldx, b, c, ldbc, dt, lddt, state, y, ldy, scratch);
    case 128: return Launch<128>(s, p, L, x, ldx, b, c, ldbc, dt, lddt, state, y, ldy, scratch);
    default:
      std::fprintf(stderr, "SsdChunkedScan: head dim %d unsupported (8, 16, 32, 64 or 128)\n", p.P);
      std::abort();
  }
}

}  // namespace subq::cuda
