// The CUDA serve backend (backend.h) over engine_cuda's CudaRunner: the model's bf16 weights resident on
// the GPU, one runner slot per sequence (a free list), prefill per sequence, the decode rows of a step in
// one batched Decode under the runner's CUDA graphs with next tokens picked on the device, and prefix /
// rollback snapshots as device-memory copies of a slot's state (CudaRunner::Snapshot). Built only with
// the CUDA backend (CMake adds this file to `subq` then).
#pragma once
#include <memory>

#include "io/tensor_store.h"
#include "model/config.h"
#include "serve/backend.h"

namespace subq::serve {

struct CudaBackendOptions {
  int slots = 32;           // sequences at once
  int max_context = 0;      // tokens per sequence (the KV capacity of attention layers)
  int context_limit = 0;    // what the scheduler may use (the CPU model's context_limit(), capped)
  int max_rows = 512;       // prompt tokens per prefill launch
};

// Uploads the weights; *cache_bytes (the prefix cache budget, kept in device memory) is capped at half
// the device memory left free after the runner's allocations.
Result<std::unique_ptr<Backend>> MakeCudaBackend(const ModelConfig& cfg, const TensorStore& tensors,
                                                 const CudaBackendOptions& o, size_t* cache_bytes);

}  // namespace subq::serve
