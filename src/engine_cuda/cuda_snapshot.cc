// CudaRunner's slot snapshots (cuda_runner.h): one device buffer per snapshot holding, layer by layer, the
// slot's state pools (f[0..3]) and then the first pos rows of its K and V caches. Copies are
// device-to-device on the runner's stream, so they order with the prefill and decode launches.
#include <cstdio>
#include <cstdlib>

#include "engine_cuda/cuda_runner.h"

namespace subq::cuda {

CudaRunner::SlotSnapshot CudaRunner::Snapshot(int slot) {
  if (slot < 0 || slot >= max_slots_) {
    std::fprintf(stderr, "CudaRunner: snapshot of slot %d out of range\n", slot);
    std::abort();
  }
  SlotSnapshot snap;
  snap.pos = pos_[slot];
  snap.bytes = StateBytesUsed(slot);
  if (cudaMallocAsync(&snap.data, snap.bytes ? snap.bytes : 16, stream_) != cudaSuccess) {
    (void)cudaGetLastError();  // out of device memory: no snapshot
    snap.data = nullptr;
    return snap;
  }
  char* dst = static_cast<char*>(snap.data);
  for (const Pools& pl : pools_) {
    for (int i = 0; i < 4; ++i)
      if (pl.f[i]) {
        SUBQ_CUDA_CHECK(cudaMemcpyAsync(dst, pl.f[i] + slot * pl.per[i], pl.per[i] * 4, cudaMemcpyDeviceToDevice, stream_));
        dst += pl.per[i] * 4;
      }
    if (pl.kc) {
      const size_t n = size_t(snap.pos) * pl.kv_width * sizeof(bf16), cap = size_t(max_context_) * pl.kv_width;
      for (bf16* c : {pl.kc, pl.vc}) {
        SUBQ_CUDA_CHECK(cudaMemcpyAsync(dst, c + slot * cap, n, cudaMemcpyDeviceToDevice, stream_));
        dst += n;
      }
    }
  }
  return snap;
}

void CudaRunner::Restore(const SlotSnapshot& snap, int slot) {
  if (slot < 0 || slot >= max_slots_ || snap.data == nullptr || snap.pos > max_context_) {
    std::fprintf(stderr, "CudaRunner: restore into slot %d of an invalid snapshot\n", slot);
    std::abort();
  }
  const char* src = static_cast<const char*>(snap.data);
  for (const Pools& pl : pools_) {
    for (int i = 0; i < 4; ++i)
      if (pl.f[i]) {
        SUBQ_CUDA_CHECK(cudaMemcpyAsync(pl.f[i] + slot * pl.per[i], src, pl.per[i] * 4, cudaMemcpyDeviceToDevice, stream_));
        src += pl.per[i] * 4;
      }
    if (pl.kc) {
      const size_t n = size_t(snap.pos) * pl.kv_width * sizeof(bf16), cap = size_t(max_context_) * pl.kv_width;
      for (bf16* c : {pl.kc, pl.vc}) {
        SUBQ_CUDA_CHECK(cudaMemcpyAsync(c + slot * cap, src, n, cudaMemcpyDeviceToDevice, stream_));
        src += n;
      }
    }
  }
  pos_[slot] = snap.pos;
}

void CudaRunner::Free(SlotSnapshot& snap) {
  if (snap.data) SUBQ_CUDA_CHECK(cudaFreeAsync(snap.data, stream_));
  snap.data = nullptr;
}

}  // namespace subq::cuda
