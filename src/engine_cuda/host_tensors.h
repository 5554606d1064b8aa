// HostTensors over a TensorStore (engine-side callers: `subq generate --device cuda`, parity tests):
// tensors are checked against the expected shape and converted to f32 by TensorStore::Load.
#pragma once
#include "engine_cuda/cuda_model.h"
#include "io/tensor_store.h"

namespace subq::cuda {

inline HostTensors FromStore(const TensorStore& st) {
  return {[&st](const std::string& n) { return st.Has(n); },
          [&st](const std::string& n, const std::vector<int64_t>& shape, std::vector<float>* out) -> std::string {
            auto t = st.Load(n, shape);
            if (!t.ok()) return t.status().message();
            *out = std::move(t.value().data);
            return "";
          }};
}

}  // namespace subq::cuda
