// Depthwise causal conv (ops::CausalConv layout: w [C, K], state [K-1, C] oldest first).
#include "ops/cuda/common.cuh"

namespace subq::cuda {
namespace {

constexpr int kMaxK = 8;

__global__ void ConvStepKernel(const float* in, int ldin, int C, const float* w, const float* bias, int K,
                               float* states, const int* slot, float* out, int ldout, bool silu) {
  const int r = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float* st = states + static_cast<size_t>(slot[r]) * (K - 1) * C;
  const float cur = in[static_cast<size_t>(r) * ldin + c];
  float win[kMaxK];
#pragma unroll
  for (int k = 0; k < kMaxK; ++k) win[k] = k < K - 1 ? st[static_cast<size_t>(k) * C + c] : (k == K - 1 ? cur : 0.0f);
  float acc = bias != nullptr ? bias[c] : 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxK; ++k)
    if (k < K) acc += w[static_cast<size_t>(c) * K + k] * win[k];
#pragma unroll
  for (int k = 0; k < kMaxK; ++k)
    if (k < K - 1) st[static_cast<size_t>(k) * C + c] = win[k + 1];
  out[static_cast<size_t>(r) * ldout + c] = silu ? SiluF(acc) : acc;
}

__global__ void ConvPrefillKernel(const float* in, int ldin, int C, const float* w, const float* bias, int K,
                                  const float* state, float* out, int ldout, bool silu) {
  const int t = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int S = K - 1;
  float acc = bias != nullptr ? bias[c] : 0.0f;
  for (int k = 0; k < K; ++k) {
    const int j = t + k - S;
    const float v = j >= 0 ? in[static_cast<size_t>(j) * ldin + c] : state[static_cast<size_t>(S + j) * C + c];
    acc += w[static_cast<size_t>(c) * K + k] * v;
  }
  out[static_cast<size_t>(t) * ldout + c] = silu ? SiluF(acc) : acc;
}

// New state row j = (old state ++ in)[L + j]: reads rows of the old state before any is overwritten.
__global__ void ConvStateKernel(const float* in, int ldin, int L, int C, int K, float* state) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int S = K - 1;
  float nw[kMaxK];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    const int src = L + j;  // index into old state (0..S-1) ++ in (S..)
    if (j < S)
      nw[j] = src < S ? state[static_cast<size_t>(src) * C + c] : in[static_cast<size_t>(src - S) * ldin + c];
  }
#pragma unroll
  for (int j = 0; j < kMaxK; ++j)
    if (j < S) state[static_cast<size_t>(j) * C + c] = nw[j];
}

}  // namespace

void CausalConvStep(cudaStream_t s, const float* in, int ldin, int rows, int C, const float* w, const float* bias,
                    int K, float* states, const int* slot, float* out, int ldout, bool silu) {
  if (rows == 0) return;
  ConvStepKernel<<<dim3(CeilDiv(C, 128), rows), 128, 0, s>>>(in, ldin, C, w, bias, K, states, slot, out, ldout, silu);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void CausalConvPrefill(cudaStream_t s, const float* in, int ldin, int L, int C, const float* w, const float* bias,
                       int K, float* state, float* out, int ldout, bool silu) {
  if (L == 0) return;
  ConvPrefillKernel<<<dim3(CeilDiv(C, 128), L), 128, 0, s>>>(in, ldin, C, w, bias, K, state, out, ldout, silu);
  SUBQ_CUDA_LAUNCH_CHECK();
  ConvStateKernel<<<CeilDiv(C, 128), 128, 0, s>>>(in, ldin, L, C, K, state);
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
