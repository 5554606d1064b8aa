// Helpers of the GPU benchmarks (bench_cuda_decode, bench_cuda_kernels): list parsing, the card's
// device-to-device copy bandwidth, and timing of a stream function through a CUDA graph.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ops/cuda/cuda_ops.h"

namespace subq::cuda::bench {

inline std::vector<int> ParseList(const char* s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoi(item));
  return v;
}

// Bytes read + written per second, 2 GiB device-to-device.
inline double CopyBandwidth() {
  const size_t n = size_t(2) << 30;
  void *a, *b;
  SUBQ_CUDA_CHECK(cudaMalloc(&a, n));
  SUBQ_CUDA_CHECK(cudaMalloc(&b, n));
  FillUniform(nullptr, static_cast<float*>(a), n / 4, 7, -1.0f, 1.0f);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  for (int i = 0; i < 3; ++i) SUBQ_CUDA_CHECK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
  const int reps = 10;
  cudaEventRecord(e0);
  for (int i = 0; i < reps; ++i) SUBQ_CUDA_CHECK(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, n, cudaMemcpyDeviceToDevice));
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaFree(a), cudaFree(b);
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  return 2.0 * n * reps / (ms * 1e-3);
}

// Microseconds per call of fn(stream, i): a graph of `calls` calls (i = 0..calls-1) replayed `reps`
// times after 2 warm-up replays; the median replay over calls.
inline double GraphMicros(const std::function<void(cudaStream_t, int)>& fn, int calls, int reps = 10) {
  cudaStream_t s;
  SUBQ_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  fn(s, 0);  // outside the capture: attribute setup and the like
  SUBQ_CUDA_CHECK(cudaStreamSynchronize(s));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  SUBQ_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i) fn(s, i);
  SUBQ_CUDA_CHECK(cudaStreamEndCapture(s, &g));
  SUBQ_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  for (int i = 0; i < 2; ++i) cudaGraphLaunch(ge, s);
  std::vector<double> us;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(e0, s);
    cudaGraphLaunch(ge, s);
    cudaEventRecord(e1, s);
    SUBQ_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    us.push_back(1e3 * ms / calls);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaStreamDestroy(s);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace subq::cuda::bench
