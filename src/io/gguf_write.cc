#include "io/gguf_write.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

namespace subq::gguf {
namespace {

constexpr uint64_t kAlignment = 32;  // GGUF's default general.alignment
enum KvType : uint32_t { kU32 = 4, kI32 = 5, kF32Kv = 6, kBool = 7, kString = 8, kArray = 9 };

template <typename T>
void Put(std::vector<uint8_t>& out, T v) {
  const size_t n = out.size();
  out.resize(n + sizeof(T));
  std::memcpy(out.data() + n, &v, sizeof(T));
}

void PutString(std::vector<uint8_t>& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

uint64_t Align(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

size_t ElementSize(GgmlType t) { return t == kF32 ? 4 : 2; }

}  // namespace

void GgufWriter::AddString(const std::string& key, const std::string& v) {
  PutString(kv_, key), Put<uint32_t>(kv_, kString), PutString(kv_, v), ++n_kv_;
}
void GgufWriter::AddU32(const std::string& key, uint32_t v) { PutString(kv_, key), Put<uint32_t>(kv_, kU32), Put(kv_, v), ++n_kv_; }
void GgufWriter::AddI32(const std::string& key, int32_t v) { PutString(kv_, key), Put<uint32_t>(kv_, kI32), Put(kv_, v), ++n_kv_; }
void GgufWriter::AddF32(const std::string& key, float v) { PutString(kv_, key), Put<uint32_t>(kv_, kF32Kv), Put(kv_, v), ++n_kv_; }
void GgufWriter::AddBool(const std::string& key, bool v) {
  PutString(kv_, key), Put<uint32_t>(kv_, kBool), Put<uint8_t>(kv_, v ? 1 : 0), ++n_kv_;
}
void GgufWriter::AddStringArray(const std::string& key, const std::vector<std::string>& v) {
  PutString(kv_, key), Put<uint32_t>(kv_, kArray), Put<uint32_t>(kv_, kString), Put<uint64_t>(kv_, v.size());
  for (const auto& s : v) PutString(kv_, s);
  ++n_kv_;
}
void GgufWriter::AddF32Array(const std::string& key, const std::vector<float>& v) {
  PutString(kv_, key), Put<uint32_t>(kv_, kArray), Put<uint32_t>(kv_, kF32Kv), Put<uint64_t>(kv_, v.size());
  for (float x : v) Put(kv_, x);
  ++n_kv_;
}
void GgufWriter::AddI32Array(const std::string& key, const std::vector<int32_t>& v) {
  PutString(kv_, key), Put<uint32_t>(kv_, kArray), Put<uint32_t>(kv_, kI32), Put<uint64_t>(kv_, v.size());
  for (int32_t x : v) Put(kv_, x);
  ++n_kv_;
}

Status GgufWriter::AddTensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                             std::vector<uint8_t> bytes) {
  if (type != kF32 && type != kF16 && type != kBF16)
    return Errorf("gguf write: tensor '{}': only F32, F16 and BF16 are written", name);
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d <= 0) return Errorf("gguf write: tensor '{}' has a non-positive dimension", name);
    numel *= static_cast<uint64_t>(d);
  }
  if (shape.empty() || shape.size() > 4) return Errorf("gguf write: tensor '{}' must have 1 to 4 dimensions", name);
  if (bytes.size() != numel * ElementSize(type))
    return Errorf("gguf write: tensor '{}' has {} bytes, its shape needs {}", name, bytes.size(), numel * ElementSize(type));
  for (const auto& t : tensors_)
    if (t.name == name) return Errorf("gguf write: tensor '{}' added twice", name);
  tensors_.push_back({name, type, shape, std::move(bytes)});
  return Status::Ok();
}

size_t GgufWriter::tensor_bytes() const {
  size_t n = 0;
  for (const auto& t : tensors_) n += t.bytes.size();
  return n;
}

Status GgufWriter::Write(const std::string& path) const {
  std::vector<uint8_t> head;
  Put<uint32_t>(head, 0x46554747u);  // "GGUF"
  Put<uint32_t>(head, 3);
  Put<uint64_t>(head, tensors_.size());
  Put<uint64_t>(head, n_kv_);
  head.insert(head.end(), kv_.begin(), kv_.end());
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    PutString(head, t.name);
    Put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) Put<uint64_t>(head, static_cast<uint64_t>(*it));
    Put<uint32_t>(head, t.type);
    Put<uint64_t>(head, offset);
    offset = Align(offset + t.bytes.size());
  }
  head.resize(Align(head.size()), 0);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Errorf("{}: cannot open for writing", tmp);
    f.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
    static const char zeros[kAlignment] = {};
    for (const auto& t : tensors_) {
      f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
      f.write(zeros, static_cast<std::streamsize>(Align(t.bytes.size()) - t.bytes.size()));
    }
    if (!f.flush()) return Errorf("{}: write failed (disk full?)", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Errorf("{}: cannot rename to {}: {}", tmp, path, ec.message());
  return Status::Ok();
}

}  // namespace subq::gguf
