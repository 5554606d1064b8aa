// Per-sequence state of a Mamba-2 / Discrete Mamba-2 layer.
#pragma once
#include <memory>
#include <optional>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "mixers/attention.h"
#include "model/layer.h"
#include "ops/ssd.h"

namespace subq {

// Conv state [K-1, conv_dim] (the last pre-conv inputs, oldest first) and SSM state [H, P, N] in f32, or
// in bf16 when the model asks for it (ModelConfig::bf16_state; compute stays f32); plus, for a head-level
// hybrid layer, the KV cache of its kept attention heads (the only part that grows with the sequence).
class SsmLayerState : public LayerState {
 public:
  SsmLayerState(int conv_rows, int conv_dim, int H, int P, int N, bool bf16)
      : conv({conv_rows, conv_dim}), ssm(bf16 ? Tensor() : Tensor({H, P, N})),
        ssm_bf16(bf16 ? static_cast<size_t>(H) * P * N : 0) {}
  std::unique_ptr<LayerState> Clone() const override { return std::make_unique<SsmLayerState>(*this); }
  size_t Bytes() const override { return OwnBytes() + (kv ? kv->Bytes() : 0); }
  size_t CapacityBytes() const override { return OwnBytes() + (kv ? kv->CapacityBytes() : 0); }
  bool bf16() const { return !ssm_bf16.empty(); }
  Tensor conv;                    // [K-1, conv_dim]
  Tensor ssm;                     // [H, P, N] f32 (empty when bf16)
  std::vector<uint16_t> ssm_bf16;  // [H, P, N] bf16 (empty when f32)
  std::optional<KvCache> kv;      // kept attention heads only

 private:
  size_t OwnBytes() const {
    return (conv.data.size() + ssm.data.size()) * sizeof(float) + ssm_bf16.size() * sizeof(uint16_t);
  }
};

}  // namespace subq

namespace subq {

// Runs one sequence's n tokens through the SSD recurrence of `st` (step when n == 1, else the chunked
// scan; ops/ssd.h for the layouts), for f32 or bf16 state, with th.n threads over heads.
// scratch: SsmScanScratchFloats(th, ...) floats.
// The chunk length is the CPU scan's own (kCpuScanChunk), not the config's chunk_size: the chunked form
// is exact for any chunk, and chunk_size is the GPU kernels' tuning (256 in mamba2 configs; on the CPU
// 64 needs ~40% fewer FLOPs per token for the same GEMM efficiency, bench_ops --only ssd).
inline constexpr int kCpuScanChunk = 64;

// y[t, h*P + p] += D[h] x[t, h*P + p] for n tokens: the skip term of the scalar-decay SSD mixers.
void AddSkip(int n, int H, int P, const float* D, const float* x, int ldx, float* y, int ldy);

// Runs run_seq(i, threads, scan_scratch) for sequences i < S of a batched SSD forward: one sequence
// runs here with every thread for its scan (over heads; a parallel region nested in an inactive one
// makes libgomp start fresh threads on every call), several run in parallel, one thread each. scan:
// S_threads slices of scan_floats floats (one per thread), taken from the workspace arena.
template <class RunSeq>
void ForEachSsmSequence(const Threads& threads, int S, float* scan, size_t scan_floats, RunSeq&& run_seq) {
  if (S == 1) {
    run_seq(0, threads, scan);
    return;
  }
#pragma omp parallel for num_threads(threads.n) schedule(dynamic, 1)
  for (int i = 0; i < S; ++i) {
    size_t slot = 0;
#ifdef _OPENMP
    slot = static_cast<size_t>(omp_get_thread_num());
#endif
    run_seq(i, Threads{1}, scan + scan_floats * slot);
  }
}
size_t SsmScanScratchFloats(const Threads& th, const ops::SsdDims& d);
void SsmScan(const Threads& th, const ops::SsdDims& d, int n, const float* x, int ldx, const float* b, const float* c, int ldbc,
             const float* loga, SsmLayerState& st, float* y, int ldy, float* scratch);

}  // namespace subq
