// Kernel benchmark of the recurrent cores against their baselines (bench/gpu/baselines.py runs this binary
// and mamba_ssm / fla on the same card): SSD chunked prefill of one Mamba-2-2.7B-shaped layer (H 80, P 64,
// N 128, G 1) at several lengths, the SSD one-token state update per batch, and Gated DeltaNet prefill and
// one-token update (H 16, dk = dv = 128). Inputs as the engine feeds them (f32 activations, f32 state);
// times from CUDA events around graphs of calls. Prints JSON on stdout.
// Usage: bench_cuda_kernels [--ssd-lengths 2048,8192,32768] [--gdn-lengths 2048,8192] [--batches 1,64,256]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_bench_util.h"

using namespace subq::cuda;
using subq::cuda::bench::GraphMicros;
using subq::cuda::bench::ParseList;

namespace {

template <typename T>
T* Dev(size_t n, uint64_t seed, float lo, float hi) {
  T* p = nullptr;
  SUBQ_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  FillUniform(nullptr, p, n, seed, lo, hi);
  return p;
}

constexpr int kH = 80, kP = 64, kN = 128;  // Mamba-2-2.7B layer
constexpr int kGH = 16, kGK = 128, kGV = 128;  // GDN layer

// Rows of [x (H P) | B (N) | C (N)] and dt [H], as after the conv.
struct SsdInputs {
  int L;
  float *xbc, *dt, *prm, *state, *y, *scratch;
  SsdParams p;
  explicit SsdInputs(int len) : L(len) {
    const int cd = kH * kP + 2 * kN;
    xbc = Dev<float>(size_t(L) * cd, 1, -1.0f, 1.0f);
    dt = Dev<float>(size_t(L) * kH, 2, -3.0f, -1.0f);
    prm = Dev<float>(3 * kH, 3, 0.5f, 1.0f);
    state = Dev<float>(size_t(kH) * kP * kN, 4, -0.1f, 0.1f);
    y = Dev<float>(size_t(L) * kH * kP, 5, 0.0f, 0.0f);
    p = SsdParams{kH, kP, kN, 1, prm, prm + kH, prm + 2 * kH};
    scratch = Dev<float>(SsdScratchFloats(p, L), 6, 0.0f, 0.0f);
  }
  void Run(cudaStream_t s) {
    const int cd = kH * kP + 2 * kN;
    SsdChunkedScan(s, p, L, xbc, cd, xbc + kH * kP, xbc + kH * kP + kN, cd, dt, kH, state, y, kH * kP, scratch);
  }
  ~SsdInputs() {
    for (float* q : {xbc, dt, prm, state, y, scratch}) cudaFree(q);
  }
};

// One GDN layer's inputs for `rows` rows in sequences of seq_len: qkv [rows, 2 H dk + H dv], ab [rows, 2H].
struct GdnInputs {
  int rows, seq_len, slots;
  float *qkv, *ab, *prm, *states, *o;
  int* slot;
  GdnParams p;
  GdnInputs(int r, int sl, int n_slots) : rows(r), seq_len(sl), slots(n_slots) {
    const int w = 2 * kGH * kGK + kGH * kGV;
    qkv = Dev<float>(size_t(rows) * w, 11, -1.0f, 1.0f);
    ab = Dev<float>(size_t(rows) * 2 * kGH, 12, -2.0f, 2.0f);
    prm = Dev<float>(2 * kGH, 13, -1.0f, 0.5f);
    states = Dev<float>(size_t(slots) * kGH * kGK * kGV, 14, -0.1f, 0.1f);
    o = Dev<float>(size_t(rows) * kGH * kGV, 15, 0.0f, 0.0f);
    SUBQ_CUDA_CHECK(cudaMalloc(&slot, size_t(slots) * sizeof(int)));
    std::vector<int> h(slots);
    for (int i = 0; i < slots; ++i) h[i] = i;
    SUBQ_CUDA_CHECK(cudaMemcpy(slot, h.data(), h.size() * sizeof(int), cudaMemcpyHostToDevice));
    p = GdnParams{kGH, kGH, kGK, kGV, prm, prm + kGH};
  }
  // Call i uses slot set i % (slots / rows) (decode: rotate over more states than the L2 holds).
  void Run(cudaStream_t s, int i) {
    const int sets = std::max(1, slots / rows), w = 2 * kGH * kGK + kGH * kGV;
    GdnForward(s, p, rows, seq_len, qkv, w, ab, 2 * kGH, states, slot + size_t(i % sets) * (seq_len == 1 ? rows : 0),
               o, kGH * kGV);
  }
  ~GdnInputs() {
    for (float* q : {qkv, ab, prm, states, o}) cudaFree(q);
    cudaFree(slot);
  }
};

// SsdStep over `rows` sequences, rotating over 512 MiB of states (as bench_cuda_decode).
double SsdStepUs(int rows) {
  const size_t per = size_t(kH) * kP * kN;
  const int sets = std::max<int>(2, static_cast<int>((size_t(512) << 20) / (size_t(rows) * per * 4)));
  const int cd = kH * kP + 2 * kN;
  float* st = Dev<float>(size_t(sets) * rows * per, 21, -0.1f, 0.1f);
  float* xbc = Dev<float>(size_t(rows) * cd, 22, -1.0f, 1.0f);
  float* dt = Dev<float>(size_t(rows) * kH, 23, -3.0f, -1.0f);
  float* prm = Dev<float>(3 * kH, 24, 0.5f, 1.0f);
  float* y = Dev<float>(size_t(rows) * kH * kP, 25, 0.0f, 0.0f);
  int* slot;
  SUBQ_CUDA_CHECK(cudaMalloc(&slot, size_t(sets) * rows * sizeof(int)));
  std::vector<int> h(size_t(sets) * rows);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<int>(i);
  SUBQ_CUDA_CHECK(cudaMemcpy(slot, h.data(), h.size() * sizeof(int), cudaMemcpyHostToDevice));
  const SsdParams p{kH, kP, kN, 1, prm, prm + kH, prm + 2 * kH};
  const double us = GraphMicros(
      [&](cudaStream_t s, int i) {
        SsdStep(s, p, rows, xbc, cd, xbc + kH * kP, xbc + kH * kP + kN, cd, dt, kH, st, slot + size_t(i % sets) * rows, y,
                kH * kP);
      },
      std::max(100, sets));
  for (float* q : {st, xbc, dt, prm, y}) cudaFree(q);
  cudaFree(slot);
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> ssd_lengths = {2048, 8192, 32768}, gdn_lengths = {2048, 8192}, batches = {1, 64, 256};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--ssd-lengths")) ssd_lengths = ParseList(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--gdn-lengths")) gdn_lengths = ParseList(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batches")) batches = ParseList(argv[i + 1]);
  }
  if (const std::string why = DeviceUnavailableReason(); !why.empty()) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return 1;
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  const double bw = bench::CopyBandwidth();
  std::printf("{\n  \"device\": \"%s\",\n  \"copy_bandwidth_GBps\": %.1f,\n", prop.name, bw / 1e9);
  std::printf("  \"ssd_prefill\": [");
  for (size_t i = 0; i < ssd_lengths.size(); ++i) {
    SsdInputs in(ssd_lengths[i]);
    const double us = GraphMicros([&](cudaStream_t s, int) { in.Run(s); }, 1, 10);
    std::printf("%s\n    {\"L\": %d, \"us\": %.2f}", i ? "," : "", ssd_lengths[i], us);
    std::fflush(stdout);
  }
  std::printf("\n  ],\n  \"ssd_step\": [");
  for (size_t i = 0; i < batches.size(); ++i) {
    const double us = SsdStepUs(batches[i]);
    const double gbps = 2.0 * batches[i] * kH * kP * kN * 4 / (us * 1e-6) / 1e9;
    std::printf("%s\n    {\"batch\": %d, \"us\": %.3f, \"state_GBps\": %.1f}", i ? "," : "", batches[i], us, gbps);
  }
  std::printf("\n  ],\n  \"gdn_prefill\": [");
  for (size_t i = 0; i < gdn_lengths.size(); ++i) {
    GdnInputs in(gdn_lengths[i], gdn_lengths[i], 1);
    const double us = GraphMicros([&](cudaStream_t s, int c) { in.Run(s, c); }, 1, 5);
    std::printf("%s\n    {\"L\": %d, \"us\": %.2f}", i ? "," : "", gdn_lengths[i], us);
    std::fflush(stdout);
  }
  std::printf("\n  ],\n  \"gdn_step\": [");
  for (size_t i = 0; i < batches.size(); ++i) {
    const int B = batches[i], per = kGH * kGK * kGV * 4;
    const int slots = std::max(2 * B, static_cast<int>((size_t(512) << 20) / per));
    GdnInputs in(B, 1, slots / B * B);
    const double us = GraphMicros([&](cudaStream_t s, int c) { in.Run(s, c); }, std::max(100, slots / B));
    const double gbps = 2.0 * B * per / (us * 1e-6) / 1e9;
    std::printf("%s\n    {\"batch\": %d, \"us\": %.3f, \"state_GBps\": %.1f}", i ? "," : "", B, us, gbps);
  }
  std::printf("\n  ]\n}\n");
  return 0;
}
