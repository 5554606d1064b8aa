// CUDA kernels of the ops layer (ops/ops.h, ops/ssd.h) for device-resident data. Every pointer is a device
// pointer; every call enqueues on `stream` and never synchronises or allocates, so a decode step built from
// them can be captured into a CUDA graph. Activations that feed a GEMM are bf16; the residual stream, norms'
// weights, recurrent states and logits are f32; weights are bf16.
//
// Batched decode rows address per-sequence state through slot indices: row r of a call belongs to the
// sequence whose state lives in slot slot[r] of a state pool (conv states [slots, K-1, C], SSD states
// [slots, H, P, N], KV caches [slots, cap, n_kv, hd]); pos[r] is the row's position in its sequence.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace subq::cuda {

using bf16 = __nv_bfloat16;

// "" when a CUDA device is usable, else why not ("no CUDA device: ..."), for --device cuda and tests.
std::string DeviceUnavailableReason();
// Aborts with file:line and the CUDA error string when `e` is not cudaSuccess.
void Check(cudaError_t e, const char* what, const char* file, int line);
#define SUBQ_CUDA_CHECK(x) ::subq::cuda::Check((x), #x, __FILE__, __LINE__)

// ---- GEMM (cuBLASLt, bf16 operands, f32 accumulate) ----
// y[M, N] (f32, row stride ldy) = x[M, K] (bf16, row stride ldx) W^T (+ y when accumulate); W [N, K] bf16.
// One Gemm object per stream: it owns the cuBLASLt handle, a workspace and cached algorithm choices.
class Gemm {
 public:
  Gemm();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;
  void Run(cudaStream_t stream, const bf16* x, int ldx, int M, const bf16* w, int N, int K, float* y, int ldy,
           bool accumulate = false);

 private:
  struct Impl;
  Impl* impl_;
};

// ---- element-wise and norms ----
// out[r, :] = bf16(x[r, :] / rms(x[r, :]) * w); rows of n.
void RmsNorm(cudaStream_t s, const float* x, const float* w, bf16* out, int rows, int n, float eps);
// x[r, :] += delta[r, :] (delta row stride ldd; nullptr: no add), then out = bf16(rmsnorm(x) * w).
void AddRmsNorm(cudaStream_t s, float* x, const float* delta, int ldd, const float* w, bf16* out, int rows, int n,
                float eps);
// Mamba-2 gated norm: out = bf16(rmsnorm_group(y * silu(z)) * w); y row stride ldy, z row stride ldz.
void GatedRmsNorm(cudaStream_t s, const float* y, int ldy, const float* z, int ldz, const float* w, bf16* out,
                  int rows, int n, int group, float eps);
// Discrete Mamba-2 gate: out = bf16(y * silu(z + z_bias)).
void SiluGate(cudaStream_t s, const float* y, int ldy, const float* z, int ldz, const float* z_bias, bf16* out,
              int rows, int n);
// SwiGLU over a fused [gate | up] row of 2n: out = bf16(silu(gate) * up).
void SiluMul(cudaStream_t s, const float* gate_up, bf16* out, int rows, int n);
// x[r, :] = embed[tokens[r], :] (bf16 -> f32).
void Embed(cudaStream_t s, const int* tokens, const bf16* embed, float* x, int rows, int dim);
void ToBF16(cudaStream_t s, const float* x, bf16* y, size_t n);
// Deterministic pseudo-random fill, uniform in [lo, hi) (random models and benchmark states).
void FillUniform(cudaStream_t s, float* x, size_t n, uint64_t seed, float lo, float hi);
void FillUniform(cudaStream_t s, bf16* x, size_t n, uint64_t seed, float lo, float hi);
// Rotates heads [0, n_heads) of row r (at x + r*ldx, head h at +h*hd) by angle pos[r] * inv_freq[i].
void Rope(cudaStream_t s, float* x, int ldx, int rows, int n_heads, int hd, const int* pos, const float* inv_freq,
          bool interleaved);
// out[r] = argmax_v logits[r, v] (row stride ld), lowest index on ties.
void Argmax(cudaStream_t s, const float* logits, int ld, int rows, int vocab, int* out);

// ---- causal depthwise conv (state [K-1, C], oldest first, as ops::CausalConv) ----
// One new token per row: out[r] = act(bias + sum_k w[:, k] * (state[slot[r]] ++ in[r])[k]); advances state.
void CausalConvStep(cudaStream_t s, const float* in, int ldin, int rows, int C, const float* w, const float* bias,
                    int K, float* states, const int* slot, float* out, int ldout, bool silu);
// L tokens of one sequence whose state is `state` [K-1, C] (advanced).
void CausalConvPrefill(cudaStream_t s, const float* in, int ldin, int L, int C, const float* w, const float* bias,
                       int K, float* state, float* out, int ldout, bool silu);

// ---- SSD (SPEC sections 2-3). Per head h (group g = h / (H/G)): S = a S + X B^T; y = S C + D x ----
struct SsdParams {
  int H = 0, P = 0, N = 0, G = 1;
  // Mamba-2: dt = softplus(dt_raw + dt_bias), a = exp(dt * -exp(A_log)), X = x * dt.
  // Discrete Mamba-2 (dt_bias == nullptr): a = exp(-softplus(dt_raw)), X = x.
  const float* dt_bias = nullptr;  // [H]
  const float* A_log = nullptr;    // [H] (Mamba-2)
  const float* D = nullptr;        // [H]
};
// One token per row; x row r at x + r*ldx (head h at +h*P), B/C at b/c + r*ldbc (+g*N), dt_raw at
// dt + r*lddt (+h), b/c 16-byte aligned and ldbc % 4 == 0; states [slots, H, P, N] f32, read and written once; y row stride ldy.
void SsdStep(cudaStream_t s, const SsdParams& p, int rows, const float* x, int ldx, const float* b,
             const float* c, int ldbc, const float* dt, int lddt, float* states, const int* slot, float* y, int ldy);
// Floats of scratch SsdChunkedScan needs for L tokens.
size_t SsdScratchFloats(const SsdParams& p, int L);
inline constexpr int kSsdChunk = 128;
// L tokens of one sequence (chunk cumsum, chunk states, state passing, chunk scan), starting from `state`
// [H, P, N] (f32; it and scratch 16-byte aligned) and leaving the final state there. The products run on bf16 tensor cores
// with f32 accumulation (ssd_chunked.cu); P in {8, 16, 32, 64, 128}, N % 8 == 0, N <= 256, and the scan's
// shared memory must fit (P 64: N <= 192; P 128: N <= 64).
void SsdChunkedScan(cudaStream_t s, const SsdParams& p, int L, const float* x, int ldx, const float* b,
                    const float* c, int ldbc, const float* dt, int lddt, float* state, float* y, int ldy,
                    float* scratch);

// ---- Mamba-3 (SPEC section 4; mixers/mamba3.h): trapezoidal rotary SSM, SISO or MIMO rank R ----
// Rows are split into sequences of seq_len consecutive rows (decode: seq_len 1, one sequence per row; one
// sequence's prefill: seq_len = rows); the state of the sequence holding rows [j*seq_len, (j+1)*seq_len)
// lives in slot slot[j*seq_len] of each pool. The recurrence runs token by token inside one kernel per
// sequence and head tile, the state held in registers: read and written once per call.
struct Mamba3Params {
  int H = 0, P = 0, N = 0, G = 1, R = 1, NA = 0;  // heads, head dim, state, groups, MIMO rank, rotated pairs
  bool half_split = false;                        // rotated pairs (i, i + N/2) (MIMO); else (2i, 2i+1)
  const float* dt_bias = nullptr;                 // [H]
  const float* D = nullptr;                       // [H]
  const float *B_norm = nullptr, *C_norm = nullptr;                       // [N]
  const float *B_bias = nullptr, *C_bias = nullptr;                       // [H, R, N]
  const float *mimo_x = nullptr, *mimo_z = nullptr, *mimo_o = nullptr;  // [H, R, P]; nullptr: ones (SISO)
  const float* out_norm = nullptr;  // [H*P]: RMSNorm per (rank, head) before the gate; nullptr: none
};
// Slot-indexed pools: phase [slots, H, NA], ssm [slots, H, P, N], k_last [slots, R, H, N], x_last [slots, H, P].
struct Mamba3Pools {
  float *phase = nullptr, *ssm = nullptr, *k_last = nullptr, *x_last = nullptr;
};
size_t Mamba3ScratchFloats(const Mamba3Params& p, int rows);
// proj rows (stride ldp) are in_proj outputs [z | x | B | C | dd_dt | dd_A | trap | angle] (B/C columns
// (r, g, n)); out [rows, H*P] = the rank-summed gated (normed) output before out_proj. N % 4 == 0 with
// N/4 a power of two <= 32.
void Mamba3Forward(cudaStream_t s, const Mamba3Params& p, int rows, int seq_len, const float* proj, int ldp,
                   const Mamba3Pools& st, const int* slot, bf16* out, float* scratch);

// ---- Gated DeltaNet (SPEC section 5; mixers/gated_deltanet.h): the gated delta rule ----
struct GdnParams {
  int Hk = 0, Hv = 0, dk = 0, dv = 0;
  const float* A_log = nullptr;    // [Hv]
  const float* dt_bias = nullptr;  // [Hv]
};
// Sequences of seq_len rows as Mamba3Forward. qkv rows (stride ldqkv, after the conv and SiLU):
// [q (Hk*dk) | k (Hk*dk) | v (Hv*dv)]; ab rows (stride ldab): raw [a (Hv) | b (Hv)] projections. q, k are
// L2-normalised here (q also scaled by 1/sqrt(dk)), g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b).
// states [slots, Hv, dv, dk] f32 (the CPU's [Hv, dk, dv] transposed), read and written once per call.
// o [rows, Hv*dv] f32 (row stride ldo), before the output norm. dk/4 a power of two <= 32; qkv 16-byte aligned.
void GdnForward(cudaStream_t s, const GdnParams& p, int rows, int seq_len, const float* qkv, int ldqkv,
                const float* ab, int ldab, float* states, const int* slot, float* o, int ldo);
// out = bf16(rmsnorm_group(y) * w[i % group] * silu(z)) (norm BEFORE gate, as GDN's o_norm; w [group]).
void RmsNormSiluGate(cudaStream_t s, const float* y, int ldy, const float* z, int ldz, const float* w, bf16* out,
                     int rows, int n, int group, float eps);

// ---- head-level hybrid: y[r, heads[k]*hd + i] = att[r, k*hd + i] (kept heads replace SSM heads) ----
void ScatterHeads(cudaStream_t s, const bf16* att, int lda, int rows, const int* heads, int n_kept, int hd, float* y,
                  int ldy);

// ---- sampling on device (model/sampler.h semantics) ----
// Per row r: temperature[r] <= 0 picks the argmax (lowest index on ties); otherwise softmax at that
// temperature over the top_k[r] largest logits (0: all), the smallest prefix (in descending order) of mass
// >= top_p[r], then the token at which the descending cumulative mass first exceeds u[r] * kept mass
// (u[r] uniform in [0, 1), drawn by the caller). Ties between equal logits may resolve differently from
// the CPU's sort. out[r] = -1 when row r holds a NaN or infinite logit. logits row stride ld.
void SampleTokens(cudaStream_t s, const float* logits, int ld, int rows, int vocab, const float* temperature,
                  const float* top_p, const int* top_k, const float* u, int* out);

// ---- attention (GQA, causal, scale 1/sqrt(hd)) ----
// Writes row r's k, v (f32, head j at +j*hd) into the caches at (slot[r], pos[r]) as bf16.
void KvAppend(cudaStream_t s, const float* k, const float* v, int ldkv, int rows, int n_kv, int hd, bf16* k_cache,
              bf16* v_cache, int cap, const int* slot, const int* pos);
// Row r's query (q + r*ldq, head h at +h*hd) attends over keys 0..pos[r] of its slot's cache: split-K over
// tiles of keys with an online softmax, then a combine pass. Prefill runs as rows too (one per token).
// scratch: AttentionScratchFloats floats; max_len bounds pos[r] + 1 (fixes the grid, for graphs).
size_t AttentionScratchFloats(int rows, int n_heads, int hd, int max_len);
void Attention(cudaStream_t s, const float* q, int ldq, int rows, int n_heads, int n_kv, int hd,
               const bf16* k_cache, const bf16* v_cache, int cap, const int* slot, const int* pos, int max_len,
               bf16* out, int ldo, float* scratch);

}  // namespace subq::cuda
