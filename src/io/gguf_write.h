// GGUF v3 writer: metadata key/values and tensors, written atomically ("<path>.tmp" renamed over path).
// Our own because `subq convert` is a C++ binary that must not need Python, and no C++ GGUF library is
// packaged (ggml's gguf.h comes only inside a llama.cpp build); the format is the one io/gguf.cc reads:
// magic "GGUF", u32 version 3, u64 tensor count, u64 kv count, the kv pairs, tensor infos (name, dims
// innermost first, GGML type, offset into the data section), padding to 32, the 32-aligned data.
// CI reads its files back with the `gguf` PyPI package (tests/test_convert.py).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf_tensors.h"
#include "util/status.h"

namespace subq::gguf {

class GgufWriter {
 public:
  void AddString(const std::string& key, const std::string& v);
  void AddU32(const std::string& key, uint32_t v);
  void AddI32(const std::string& key, int32_t v);
  void AddF32(const std::string& key, float v);
  void AddBool(const std::string& key, bool v);
  void AddStringArray(const std::string& key, const std::vector<std::string>& v);
  void AddF32Array(const std::string& key, const std::vector<float>& v);
  void AddI32Array(const std::string& key, const std::vector<int32_t>& v);
  // shape in row-major (torch) order; bytes must be the tensor in that order, of GGML type F32, F16 or BF16.
  Status AddTensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape, std::vector<uint8_t> bytes);
  Status Write(const std::string& path) const;
  size_t tensor_bytes() const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<uint8_t> kv_;  // serialized key/value pairs
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace subq::gguf
