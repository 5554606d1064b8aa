// Norms, gates, embedding, RoPE and greedy sampling: one block per row, f32 math.
#include <cstdio>
#include <cstdlib>

#include "ops/cuda/common.cuh"

namespace subq::cuda {

void Check(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "CUDA error at %s:%d: %s: %s\n", file, line, what, cudaGetErrorString(e));
  std::abort();
}

std::string DeviceUnavailableReason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(e);
  if (n == 0) return "no CUDA device: the driver reports none";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "no CUDA device: cannot read device 0";
  if (prop.major < 8)
    return "no CUDA device: " + std::string(prop.name) + " (compute " + std::to_string(prop.major) + "." +
           std::to_string(prop.minor) + ") lacks bf16 support";
  return "";
}

namespace {

constexpr int kRowThreads = 256;

__global__ void RmsNormKernel(float* x, const float* delta, int ldd, const float* w, bf16* out, int n, float eps) {
  float* xr = x + static_cast<size_t>(blockIdx.x) * n;
  const float* dr = delta != nullptr ? delta + static_cast<size_t>(blockIdx.x) * ldd : nullptr;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = xr[i];
    if (dr != nullptr) {
      v += dr[i];
      xr[i] = v;
    }
    ss += v * v;
  }
  const float inv = rsqrtf(BlockSum(ss) / n + eps);
  bf16* o = out + static_cast<size_t>(blockIdx.x) * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = __float2bfloat16(xr[i] * inv * w[i]);
}

// One block per (row, group).
__global__ void GatedNormKernel(const float* y, int ldy, const float* z, int ldz, const float* w, bf16* out, int n,
                                int group, float eps) {
  const int r = blockIdx.x, g0 = blockIdx.y * group;
  const float* yr = y + static_cast<size_t>(r) * ldy + g0;
  const float* zr = z + static_cast<size_t>(r) * ldz + g0;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < group; i += blockDim.x) {
    const float v = yr[i] * SiluF(zr[i]);
    ss += v * v;
  }
  const float inv = rsqrtf(BlockSum(ss) / group + eps);
  bf16* o = out + static_cast<size_t>(r) * n + g0;
  for (int i = threadIdx.x; i < group; i += blockDim.x)
    o[i] = __float2bfloat16(yr[i] * SiluF(zr[i]) * inv * w[g0 + i]);
}

// One block per (row, group): norm first, then the gate (GDN's o_norm); w [group].
__global__ void NormSiluGateKernel(const float* y, int ldy, const float* z, int ldz, const float* w, bf16* out, int n,
                                   int group, float eps) {
  const int r = blockIdx.x, g0 = blockIdx.y * group;
  const float* yr = y + static_cast<size_t>(r) * ldy + g0;
  const float* zr = z + static_cast<size_t>(r) * ldz + g0;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < group; i += blockDim.x) ss += yr[i] * yr[i];
  const float inv = rsqrtf(BlockSum(ss) / group + eps);
  bf16* o = out + static_cast<size_t>(r) * n + g0;
  for (int i = threadIdx.x; i < group; i += blockDim.x) o[i] = __float2bfloat16(yr[i] * inv * w[i] * SiluF(zr[i]));
}

__global__ void ScatterHeadsKernel(const bf16* att, int lda, const int* heads, int n_kept, int hd, float* y, int ldy) {
  const int r = blockIdx.x;
  for (int e = threadIdx.x; e < n_kept * hd; e += blockDim.x)
    y[static_cast<size_t>(r) * ldy + heads[e / hd] * hd + e % hd] = __bfloat162float(att[static_cast<size_t>(r) * lda + e]);
}

__global__ void SiluGateKernel(const float* y, int ldy, const float* z, int ldz, const float* zb, bf16* out, int n) {
  const int r = blockIdx.x;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float g = z[static_cast<size_t>(r) * ldz + i] + (zb != nullptr ? zb[i] : 0.0f);
    out[static_cast<size_t>(r) * n + i] = __float2bfloat16(y[static_cast<size_t>(r) * ldy + i] * SiluF(g));
  }
}

__global__ void SiluMulKernel(const float* gu, bf16* out, int n) {
  const float* row = gu + static_cast<size_t>(blockIdx.x) * 2 * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    out[static_cast<size_t>(blockIdx.x) * n + i] = __float2bfloat16(SiluF(row[i]) * row[n + i]);
}

__global__ void EmbedKernel(const int* tokens, const bf16* embed, float* x, int dim) {
  const bf16* e = embed + static_cast<size_t>(tokens[blockIdx.x]) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) x[static_cast<size_t>(blockIdx.x) * dim + i] = __bfloat162float(e[i]);
}

__global__ void ToBF16Kernel(const float* x, bf16* y, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}

__device__ __forceinline__ float HashUniform(uint64_t seed, size_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

template <typename T>
__global__ void FillKernel(T* x, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x)
    x[i] = static_cast<T>(lo + (hi - lo) * HashUniform(seed, i));
}

__global__ void RopeKernel(float* x, int ldx, int n_heads, int hd, const int* pos, const float* inv_freq,
                           bool interleaved) {
  float* row = x + static_cast<size_t>(blockIdx.x) * ldx;
  const int half = hd / 2;
  const float p = static_cast<float>(pos[blockIdx.x]);
  for (int e = threadIdx.x; e < n_heads * half; e += blockDim.x) {
    const int h = e / half, i = e % half;
    float sn, cs;
    sincosf(p * inv_freq[i], &sn, &cs);
    float* v = row + static_cast<size_t>(h) * hd;
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * cs - x1 * sn;
    v[b] = x0 * sn + x1 * cs;
  }
}

__global__ void ArgmaxKernel(const float* logits, int ld, int vocab, int* out) {
  const float* row = logits + static_cast<size_t>(blockIdx.x) * ld;
  float best = -FLT_MAX;
  int idx = 0x7fffffff;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = row[i];
    if (v > best) best = v, idx = i;  // i increases per thread: first max kept
  }
  __shared__ float sv[kRowThreads];
  __shared__ int si[kRowThreads];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = idx;
  __syncthreads();
  for (int st = blockDim.x / 2; st > 0; st >>= 1) {
    if (threadIdx.x < st) {
      const float ov = sv[threadIdx.x + st];
      const int oi = si[threadIdx.x + st];
      if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) sv[threadIdx.x] = ov, si[threadIdx.x] = oi;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = si[0];
}

}  // namespace

void RmsNorm(cudaStream_t s, const float* x, const float* w, bf16* out, int rows, int n, float eps) {
  if (rows == 0) return;
  RmsNormKernel<<<rows, kRowThreads, 0, s>>>(const_cast<float*>(x), nullptr, 0, w, out, n, eps);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void AddRmsNorm(cudaStream_t s, float* x, const float* delta, int ldd, const float* w, bf16* out, int rows, int n,
                float eps) {
  if (rows == 0) return;
  RmsNormKernel<<<rows, kRowThreads, 0, s>>>(x, delta, ldd, w, out, n, eps);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void GatedRmsNorm(cudaStream_t s, const float* y, int ldy, const float* z, int ldz, const float* w, bf16* out,
                  int rows, int n, int group, float eps) {
  if (rows == 0) return;
  GatedNormKernel<<<dim3(rows, n / group), kRowThreads, 0, s>>>(y, ldy, z, ldz, w, out, n, group, eps);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void RmsNormSiluGate(cudaStream_t s, const float* y, int ldy, const float* z, int ldz, const float* w, bf16* out,
                     int rows, int n, int group, float eps) {
  if (rows == 0) return;
  NormSiluGateKernel<<<dim3(rows, n / group), kRowThreads, 0, s>>>(y, ldy, z, ldz, w, out, n, group, eps);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void ScatterHeads(cudaStream_t s, const bf16* att, int lda, int rows, const int* heads, int n_kept, int hd, float* y,
                  int ldy) {
  if (rows == 0 || n_kept == 0) return;
  ScatterHeadsKernel<<<rows, kRowThreads, 0, s>>>(att, lda, heads, n_kept, hd, y, ldy);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void SiluGate(cudaStream_t s, const float* y, int ldy, const float* z, int ldz, const float* z_bias, bf16* out,
              int rows, int n) {
  if (rows == 0) return;
  SiluGateKernel<<<rows, kRowThreads, 0, s>>>(y, ldy, z, ldz, z_bias, out, n);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void SiluMul(cudaStream_t s, const float* gate_up, bf16* out, int rows, int n) {
  if (rows == 0) return;
  SiluMulKernel<<<rows, kRowThreads, 0, s>>>(gate_up, out, n);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void Embed(cudaStream_t s, const int* tokens, const bf16* embed, float* x, int rows, int dim) {
  if (rows == 0) return;
  EmbedKernel<<<rows, kRowThreads, 0, s>>>(tokens, embed, x, dim);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void ToBF16(cudaStream_t s, const float* x, bf16* y, size_t n) {
  if (n == 0) return;
  ToBF16Kernel<<<CeilDiv(static_cast<long>(n), 256) < 4096 ? CeilDiv(static_cast<long>(n), 256) : 4096, 256, 0, s>>>(x, y, n);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void FillUniform(cudaStream_t s, float* x, size_t n, uint64_t seed, float lo, float hi) {
  if (n == 0) return;
  FillKernel<<<4096, 256, 0, s>>>(x, n, seed, lo, hi);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void FillUniform(cudaStream_t s, bf16* x, size_t n, uint64_t seed, float lo, float hi) {
  if (n == 0) return;
  FillKernel<<<4096, 256, 0, s>>>(x, n, seed, lo, hi);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void Rope(cudaStream_t s, float* x, int ldx, int rows, int n_heads, int hd, const int* pos, const float* inv_freq,
          bool interleaved) {
  if (rows == 0) return;
  RopeKernel<<<rows, 128, 0, s>>>(x, ldx, n_heads, hd, pos, inv_freq, interleaved);
  SUBQ_CUDA_LAUNCH_CHECK();
}

void Argmax(cudaStream_t s, const float* logits, int ld, int rows, int vocab, int* out) {
  if (rows == 0) return;
  ArgmaxKernel<<<rows, kRowThreads, 0, s>>>(logits, ld, vocab, out);
  SUBQ_CUDA_LAUNCH_CHECK();
}

}  // namespace subq::cuda
