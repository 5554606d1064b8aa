// TensorStore: the tensors of a checkpoint, by name, as the readers found them (dtype, shape, bytes),
// before any conversion. Every reader (safetensors, llama2.c, GGUF) fills one after validating that
// each tensor's bytes lie inside its file. Model code pulls matrices out with LoadWeight() (a typed view,
// never converted) and small vectors with Load() (checked shape, converted to f32). Quantized matrices
// (io/quantized.h) are an I8 or U8 tensor `X` plus an F16 tensor `X_scale`.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ops/weight.h"
#include "util/status.h"
#include "util/tensor.h"

namespace subq {

enum class DType { kF32, kF16, kBF16, kI8, kU8 };  // I8: q8 values, U8: packed q4 pairs
const char* DTypeName(DType t);
size_t DTypeSize(DType t);

// A read-only memory-mapped file (or an owned byte buffer) that keeps tensor bytes alive.
class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into a MappedFile or an owned buffer held by the store
  size_t nbytes = 0;
  std::string file;  // the file it came from, for error messages
};

// The shape a tensor stands for: a q4 matrix stored as U8 [rows, cols/2] stands for [rows, cols].
std::vector<int64_t> LogicalShape(const TensorInfo& t);

class TensorStore {
 public:
  // Adds a tensor; fails if the name repeats or nbytes disagrees with dtype x shape.
  Status Add(TensorInfo info);
  void KeepAlive(std::shared_ptr<MappedFile> f) { files_.push_back(std::move(f)); }
  // Stores bytes owned by the store itself (e.g. tensors converted at load) and returns a pointer.
  const uint8_t* Own(std::vector<uint8_t> bytes);

  bool Has(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo* Find(const std::string& name) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  // Copies share the mapped files and owned buffers (cheap; views stay valid).
  // Loads `name` as f32, checking that its shape equals `expected` (an error names the file, the
  // tensor, the expected and the found shape). Quantized matrices are dequantized.
  Result<Tensor> Load(const std::string& name, const std::vector<int64_t>& expected) const;
  // A matrix [rows, cols] as a typed view into the file's bytes (f32, f16, bf16; q8/q4 with the scales of
  // `name`_scale, layouts as in ops/weight.h); the view lives as long as this store or any copy of it.
  // Wrong shapes, dtypes, block sizes or scale counts are errors naming the file and the tensor.
  Result<ops::Weight> LoadWeight(const std::string& name, int64_t rows, int64_t cols) const;
  // Same, without a shape check (for callers that derive dims from the tensor itself).
  Result<Tensor> LoadAny(const std::string& name) const;

  // Free-form description of where the store came from (e.g. "HF folder path").
  std::string source;

 private:
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> owned_;  // shared by copies of the store
};

float HalfToFloat(uint16_t h);
float BF16ToFloat(uint16_t h);

}  // namespace subq
