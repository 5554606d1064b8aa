// SSD for Mamba-2 and Discrete Mamba-2 (SPEC sections 2-3): the batched one-token state update and the
// chunked prefill (chunk cumsum, chunk states, state passing, chunk scan), f32 state and math.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "ops/cuda/common.cuh"

namespace subq::cuda {
namespace {

// Per-token decay and input scale of one head: a = exp(loga), X = x * xs.
__device__ __forceinline__ void DecayOf(const SsdParams& p, int h, float dt_raw, float* loga, float* xs) {
  if (p.dt_bias != nullptr) {
    const float dt = SoftplusF(dt_raw + p.dt_bias[h]);
    *loga = -__expf(p.A_log[h]) * dt;
    *xs = dt;
  } else {
    *loga = -SoftplusF(dt_raw);
    *xs = 1.0f;
  }
}

constexpr int kStepThreads = 256;

// Block (row, head, p-tile); each thread owns 4 consecutive n (float4) of RPT rows p, N/4 threads per p:
// all RPT state loads are issued before the first use (more bytes in flight at large batch).
template <int RPT>
__global__ void __launch_bounds__(kStepThreads) SsdStepKernel(SsdParams p, const float* x, int ldx, const float* b,
                                                              const float* c, int ldbc, const float* dt, int lddt,
                                                              float* states, const int* slot, float* y, int ldy) {
  const int r = blockIdx.x, h = blockIdx.y;
  const int tpr = p.N / 4, rows_per_pass = kStepThreads / tpr;
  const int p0 = blockIdx.z * rows_per_pass * RPT + threadIdx.x / tpr, n0 = (threadIdx.x % tpr) * 4;
  const int g = h / (p.H / p.G);
  float loga, xs;
  DecayOf(p, h, dt[static_cast<size_t>(r) * lddt + h], &loga, &xs);
  const float a = __expf(loga);
  const float4 bv = *reinterpret_cast<const float4*>(b + static_cast<size_t>(r) * ldbc + g * p.N + n0);
  const float4 cv = *reinterpret_cast<const float4*>(c + static_cast<size_t>(r) * ldbc + g * p.N + n0);
  float4* base = reinterpret_cast<float4*>(states + (static_cast<size_t>(slot[r]) * p.H + h) * p.P * p.N + n0);
  float4 s[RPT];
  float xv[RPT];
#pragma unroll
  for (int k = 0; k < RPT; ++k) {
    const int pi = p0 + k * rows_per_pass;
    if (pi < p.P) {
      s[k] = base[static_cast<size_t>(pi) * p.N / 4];
      xv[k] = x[static_cast<size_t>(r) * ldx + h * p.P + pi];
    }
  }
#pragma unroll
  for (int k = 0; k < RPT; ++k) {
    const int pi = p0 + k * rows_per_pass;
    float yv = 0.0f;
    if (pi < p.P) {
      const float X = xv[k] * xs;
      s[k].x = a * s[k].x + X * bv.x;
      s[k].y = a * s[k].y + X * bv.y;
      s[k].z = a * s[k].z + X * bv.z;
      s[k].w = a * s[k].w + X * bv.w;
      base[static_cast<size_t>(pi) * p.N / 4] = s[k];
      yv = s[k].x * cv.x + s[k].y * cv.y + s[k].z * cv.z + s[k].w * cv.w;
    }
    for (int o = tpr / 2; o > 0; o >>= 1) yv += __shfl_xor_sync(0xffffffffu, yv, o);
    if (pi < p.P && threadIdx.x % tpr == 0) y[static_cast<size_t>(r) * ldy + h * p.P + pi] = yv + p.D[h] * xv[k];
  }
}

// ---- chunked prefill; scratch: cum [H, L], xs [H, L], chunk states [nc, H, P, N] ----
constexpr int Q = kSsdChunk;

// Block (chunk, head): per-token decay and the inclusive cumsum of loga within the chunk.
__global__ void ChunkCumsumKernel(SsdParams p, int L, const float* dt, int lddt, float* cum, float* xsv) {
  const int ch = blockIdx.x, h = blockIdx.y, t = ch * Q + threadIdx.x;
  __shared__ float s[Q];
  float loga = 0.0f, xs = 0.0f;
  if (t < L) DecayOf(p, h, dt[static_cast<size_t>(t) * lddt + h], &loga, &xs);
  s[threadIdx.x] = loga;
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

// Block (chunk, head): chunk state = sum_s exp(cum_last - cum_s) X_s B_s^T.
__global__ void ChunkStateKernel(SsdParams p, int L, const float* x, int ldx, const float* b, int ldbc,
                                 const float* cum, const float* xsv, float* cstates) {
  extern __shared__ float sm[];
  const int ch = blockIdx.x, h = blockIdx.y, g = h / (p.H / p.G), t0 = ch * Q, n = min(Q, L - t0);
  float* Bs = sm;             // [Q, N]
  float* Xs = sm + Q * p.N;   // [Q, P], weighted
  const float last = cum[static_cast<size_t>(h) * L + t0 + n - 1];
  for (int e = threadIdx.x; e < n * p.N; e += blockDim.x)
    Bs[e] = b[static_cast<size_t>(t0 + e / p.N) * ldbc + g * p.N + e % p.N];
  for (int e = threadIdx.x; e < n * p.P; e += blockDim.x) {
    const int s = e / p.P, t = t0 + s;
    const float wgt = __expf(last - cum[static_cast<size_t>(h) * L + t]) * xsv[static_cast<size_t>(h) * L + t];
    Xs[e] = x[static_cast<size_t>(t) * ldx + h * p.P + e % p.P] * wgt;
  }
  __syncthreads();
  float* out = cstates + (static_cast<size_t>(ch) * p.H + h) * p.P * p.N;
  for (int e = threadIdx.x; e < p.P * p.N; e += blockDim.x) {
    const int pi = e / p.N, ni = e % p.N;
    float acc = 0.0f;
    for (int s = 0; s < n; ++s) acc += Xs[s * p.P + pi] * Bs[s * p.N + ni];
    out[e] = acc;
  }
}

// Thread per state element: S_c = exp(chunk sum) S_{c-1} + chunkstate_c; leaves in cstates[c] the state
// entering chunk c, and the final state in `state`. The chunk states and decays of kAhead chunks are loaded
// before any is used, so the sequential recurrence waits for one memory round trip per kAhead chunks, not
// per chunk (the loop was latency-bound at a few percent of DRAM bandwidth).
constexpr int kAhead = 8;
__global__ void StatePassKernel(SsdParams p, int L, int nc, const float* __restrict__ cum,
                                float* __restrict__ cstates, float* __restrict__ state) {
  const size_t per = static_cast<size_t>(p.H) * p.P * p.N;
  const size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (e >= per) return;
  const int h = static_cast<int>(e / (static_cast<size_t>(p.P) * p.N));
  float S = state[e];
  for (int c0 = 0; c0 < nc; c0 += kAhead) {
    float cs[kAhead], decay[kAhead];
#pragma unroll
    for (int k = 0; k < kAhead; ++k) {
      const int ch = c0 + k;
      if (ch < nc) {
        cs[k] = cstates[ch * per + e];
        decay[k] = __expf(cum[static_cast<size_t>(h) * L + min(L, (ch + 1) * Q) - 1]);
      }
    }
#pragma unroll
    for (int k = 0; k < kAhead; ++k)
      if (c0 + k < nc) {
        cstates[(c0 + k) * per + e] = S;
        S = decay[k] * S + cs[k];
      }
  }
  state[e] = S;
}

// Block (chunk, head): Y_l = sum_{s<=l} (C_l.B_s) exp(cum_l - cum_s) X_s + exp(cum_l) S_prev C_l + D x_l.
__global__ void ChunkScanKernel(SsdParams p, int L, const float* x, int ldx, const float* b, const float* c,
                                int ldbc, const float* cum, const float* xsv, const float* cstates, float* y,
                                int ldy) {
  extern __shared__ float sm[];
  const int ch = blockIdx.x, h = blockIdx.y, g = h / (p.H / p.G), t0 = ch * Q, n = min(Q, L - t0);
  // B and S_prev rows padded to N + 1 floats: the loops below read them down a column (lanes differ in the
  // row), which an unpadded stride of N (a multiple of 32) maps to one shared-memory bank. S_prev takes B's
  // place once the scores are computed (less shared memory per block: two blocks per SM at P 64, N 128).
  const int ldn = p.N + 1;
  float* Cs = sm;                      // [Q, N]
  float* Bs = Cs + Q * p.N;            // [Q, N + 1], then S_prev [P, N + 1]
  float* Sp = Bs;
  float* Xs = Bs + max(Q, p.P) * ldn;  // [Q, P]
  float* M = Xs + Q * p.P;             // [Q, Q]
  float* cm = M + Q * Q;               // [Q]
  const float* hc = cum + static_cast<size_t>(h) * L + t0;
  for (int e = threadIdx.x; e < n * p.N; e += blockDim.x) {
    const size_t row = static_cast<size_t>(t0 + e / p.N) * ldbc + g * p.N + e % p.N;
    Cs[e] = c[row];
    Bs[(e / p.N) * ldn + e % p.N] = b[row];
  }
  for (int e = threadIdx.x; e < n * p.P; e += blockDim.x)
    Xs[e] = x[static_cast<size_t>(t0 + e / p.P) * ldx + h * p.P + e % p.P];
  for (int e = threadIdx.x; e < n; e += blockDim.x) cm[e] = hc[e];
  __syncthreads();
  for (int e = threadIdx.x; e < n * n; e += blockDim.x) {
    const int l = e / n, s = e % n;
    float v = 0.0f;
    if (s <= l) {
      for (int k = 0; k < p.N; ++k) v += Cs[l * p.N + k] * Bs[s * ldn + k];
      v *= __expf(cm[l] - cm[s]) * xsv[static_cast<size_t>(h) * L + t0 + s];
    }
    M[l * Q + s] = v;
  }
  __syncthreads();
  const float* sprev = cstates + (static_cast<size_t>(ch) * p.H + h) * p.P * p.N;
  for (int e = threadIdx.x; e < p.P * p.N; e += blockDim.x) Sp[(e / p.N) * ldn + e % p.N] = sprev[e];
  __syncthreads();
  for (int e = threadIdx.x; e < n * p.P; e += blockDim.x) {
    const int l = e / p.P, pi = e % p.P;
    float acc = 0.0f;
    for (int s = 0; s <= l; ++s) acc += M[l * Q + s] * Xs[s * p.P + pi];
    float off = 0.0f;
    for (int k = 0; k < p.N; ++k) off += Cs[l * p.N + k] * Sp[pi * ldn + k];
    y[static_cast<size_t>(t0 + l) * ldy + h * p.P + pi] = acc + __expf(cm[l]) * off + p.D[h] * Xs[l * p.P + pi];
  }
}

size_t ScanSmemBytes(const SsdParams& p) {
  return sizeof(float) * (Q * p.N + std::max(Q, p.P) * (p.N + 1) + Q * p.P + Q * Q + Q);
}

}  // namespace

void SsdStep(cudaStream_t s, const SsdParams& p, int rows, const float* x, int ldx, const float* b,
             const float* c, int ldbc, const float* dt, int lddt, float* states, const int* slot, float* y, int ldy) {
  if (rows == 0) return;
  const int tpr = p.N / 4, rows_per_block = kStepThreads / tpr;
  if (p.N % 4 != 0 || tpr > 32 || (tpr & (tpr - 1)) != 0) {
    std::fprintf(stderr, "SsdStep: state size %d unsupported (need N/4 a power of two <= 32)\n", p.N);
    std::abort();
  }
  if (reinterpret_cast<uintptr_t>(b) % 16 != 0 || reinterpret_cast<uintptr_t>(c) % 16 != 0 || ldbc % 4 != 0) {
    std::fprintf(stderr, "SsdStep: B/C rows must be 16-byte aligned (ldbc %d)\n", ldbc);
    std::abort();
  }
  // Small batches spread each head over more blocks; large ones give each thread 4 rows of state.
  if (rows >= 16) {
    const dim3 grid(rows, p.H, CeilDiv(p.P, rows_per_block * 4));
    SsdStepKernel<4><<<grid, kStepThreads, 0, s>>>(p, x, ldx, b, c, ldbc, dt, lddt, states, slot, y, ldy);
  } else {
    const dim3 grid(rows, p.H, CeilDiv(p.P, rows_per_block));
    SsdStepKernel<1><<<grid, kStepThreads, 0, s>>>(p, x, ldx, b, c, ldbc, dt, lddt, states, slot, y, ldy);
  }
  SUBQ_CUDA_LAUNCH_CHECK();
}

size_t SsdScratchFloats(const SsdParams& p, int L) {
  const size_t nc = CeilDiv(L, Q);
  return 2 * static_cast<size_t>(p.H) * L + nc * p.H * p.P * p.N;
}

void SsdChunkedScan(cudaStream_t s, const SsdParams& p, int L, const float* x, int ldx, const float* b,
                    const float* c, int ldbc, const float* dt, int lddt, float* state, float* y, int ldy,
                    float* scratch) {
  if (L == 0) return;
  const int nc = CeilDiv(L, Q);
  float* cum = scratch;
  float* xsv = cum + static_cast<size_t>(p.H) * L;
  float* cst = xsv + static_cast<size_t>(p.H) * L;
  ChunkCumsumKernel<<<dim3(nc, p.H), Q, 0, s>>>(p, L, dt, lddt, cum, xsv);
  SUBQ_CUDA_LAUNCH_CHECK();
  const size_t st_smem = sizeof(float) * Q * (p.N + p.P), sc_smem = ScanSmemBytes(p);
  SUBQ_CUDA_CHECK(cudaFuncSetAttribute(ChunkStateKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(st_smem)));
  SUBQ_CUDA_CHECK(cudaFuncSetAttribute(ChunkScanKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(sc_smem)));
  ChunkStateKernel<<<dim3(nc, p.H), 256, st_smem, s>>>(p, L, x, ldx, b, ldbc, cum, xsv, cst);
  SUBQ_CUDA_LAUNCH_CHECK();
  const size_t per = static_cast<size_t>(p.H) * p.P * p.N;
  StatePassKernel<<<CeilDiv(static_cast<long>(per), 256), 256, 0, s>>>(p, L, nc, cum, cst, state);
  SUBQ_CUDA_LAUNCH_CHECK();
  ChunkScanKernel<<<dim3(nc, p.H), 256, sc_smem, s>>>(p, L, x, ldx, b, c, ldbc, cum, xsv, cst, y, ldy);
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
