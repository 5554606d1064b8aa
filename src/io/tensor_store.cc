#include "io/tensor_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace subq {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
  }
  return "?";
}

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16:
    case DType::kBF16: return 2;
    case DType::kI8:
    case DType::kU8: return 1;
  }
  return 0;
}

std::vector<int64_t> LogicalShape(const TensorInfo& t) {
  std::vector<int64_t> s = t.shape;
  if (t.dtype == DType::kU8 && !s.empty()) s.back() *= 2;
  return s;
}

Result<std::shared_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Errorf("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Errorf("{}: not a regular file", path);
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return Errorf("{}: mmap failed: {}", path, std::strerror(errno));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

Status TensorStore::Add(TensorInfo info) {
  if (index_.count(info.name)) return Errorf("{}: tensor '{}' appears twice", info.file, info.name);
  uint64_t want = DTypeSize(info.dtype);
  for (auto d : info.shape) {
    if (d < 0) return Errorf("{}: tensor '{}' has a negative dimension", info.file, info.name);
    if (__builtin_mul_overflow(want, static_cast<uint64_t>(d), &want))
      return Errorf("{}: tensor '{}' shape {} overflows", info.file, info.name, ShapeStr(info.shape));
  }
  if (want != info.nbytes)
    return Errorf("{}: tensor '{}' has {} bytes but {} {} needs {}", info.file, info.name, info.nbytes,
                  DTypeName(info.dtype), ShapeStr(info.shape), want);
  index_[info.name] = tensors_.size();
  tensors_.push_back(std::move(info));
  return Status::Ok();
}

const uint8_t* TensorStore::Own(std::vector<uint8_t> bytes) {
  owned_.push_back(std::make_unique<std::vector<uint8_t>>(std::move(bytes)));
  return owned_.back()->data();
}

const TensorInfo* TensorStore::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// One conversion for the whole project: the ops layer's (ops/weight.h).
float HalfToFloat(uint16_t h) { return ops::HalfBitsToFloat(h); }
float BF16ToFloat(uint16_t h) { return ops::BF16BitsToFloat(h); }

Result<Tensor> TensorStore::LoadAny(const std::string& name) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr) return Errorf("{}: missing tensor '{}'", source, name);
  if (t->dtype == DType::kI8 || t->dtype == DType::kU8) {  // a quantized matrix: dequantize row by row
    const std::vector<int64_t> shape = LogicalShape(*t);
    if (shape.size() != 2)
      return Errorf("{}: tensor '{}' is {} {}; quantized tensors must be matrices", t->file, name,
                    DTypeName(t->dtype), ShapeStr(t->shape));
    SUBQ_ASSIGN_OR_RETURN(ops::Weight w, LoadWeight(name, shape[0], shape[1]));
    Tensor out(shape);
    for (int64_t r = 0; r < shape[0]; ++r) w.DequantizeRow(r, out.ptr() + r * shape[1]);
    return out;
  }
  Tensor out(t->shape);
  const int64_t n = out.numel();
  if (t->dtype == DType::kF32) {
    std::memcpy(out.ptr(), t->data, n * 4);
    return out;
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, t->data + 2 * i, 2);
    out.data[i] = t->dtype == DType::kF16 ? HalfToFloat(v) : BF16ToFloat(v);
  }
  return out;
}

Result<ops::Weight> TensorStore::LoadWeight(const std::string& name, int64_t rows, int64_t cols) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr) return Errorf("{}: missing tensor '{}' (expected shape [{}, {}])", source, name, rows, cols);
  ops::Weight w;
  w.rows = rows;
  w.cols = cols;
  w.data = t->data;
  const bool quantized = t->dtype == DType::kI8 || t->dtype == DType::kU8;
  const std::vector<int64_t> expected{rows, cols};
  if (LogicalShape(*t) != expected)
    return Errorf("{}: tensor '{}' ({}) has shape {}, expected {}{}", t->file, name, DTypeName(t->dtype),
                  ShapeStr(t->shape), ShapeStr(expected),
                  t->dtype == DType::kU8 ? fmt::format(" (q4: stored as U8 [{}, {}])", rows, cols / 2) : "");
  switch (t->dtype) {
    case DType::kF32: w.type = ops::WeightType::kF32; break;
    case DType::kF16: w.type = ops::WeightType::kF16; break;
    case DType::kBF16: w.type = ops::WeightType::kBF16; break;
    case DType::kI8: w.type = ops::WeightType::kQ8; break;
    case DType::kU8: w.type = ops::WeightType::kQ4; break;
  }
  if (!quantized) return w;
  const int64_t B = ops::kQuantBlock;
  if (cols % B != 0)
    return Errorf("{}: quantized tensor '{}' has {} columns, not a multiple of the block size {}", t->file, name, cols, B);
  const std::string scale_name = name + "_scale";
  const TensorInfo* s = Find(scale_name);
  if (s == nullptr)
    return Errorf("{}: quantized tensor '{}' ({}) has no scale tensor '{}' (F16 [{}, {}])", t->file, name,
                  DTypeName(t->dtype), scale_name, rows, cols / B);
  const std::vector<int64_t> want{rows, cols / B};
  if (s->dtype != DType::kF16 || s->shape != want)
    return Errorf("{}: scale tensor '{}' is {} {}, expected F16 {} (one scale per block of {} columns)", s->file,
                  scale_name, DTypeName(s->dtype), ShapeStr(s->shape), ShapeStr(want), B);
  w.scales = reinterpret_cast<const uint16_t*>(s->data);
  return w;
}

Result<Tensor> TensorStore::Load(const std::string& name, const std::vector<int64_t>& expected) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr) return Errorf("{}: missing tensor '{}' (expected shape {})", source, name, ShapeStr(expected));
  if (LogicalShape(*t) != expected)
    return Errorf("{}: tensor '{}' has shape {}, expected {}", t->file, name, ShapeStr(t->shape), ShapeStr(expected));
  return LoadAny(name);
}

}  // namespace subq
