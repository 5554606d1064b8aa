// ByteCursor: bounds-checked little-endian reads from a byte range (a memory-mapped file). Every read
// checks the remaining length first, so a corrupt length or count becomes an error, never a read past
// the end. Used by the binary checkpoint readers (GGUF, llama2.c).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "util/status.h"

namespace subq {

class ByteCursor {
 public:
  ByteCursor(const uint8_t* data, size_t size, std::string path) : data_(data), size_(size), path_(std::move(path)) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return data_ + pos_; }
  const std::string& path() const { return path_; }

  // Fails (naming `what` and the offset) unless n more bytes are available.
  Status Need(uint64_t n, const char* what) const {
    if (n > remaining())
      return Errorf("{}: truncated: {} needs {} bytes at offset {}, but only {} remain (file size {})", path_, what,
                    n, pos_, remaining(), size_);
    return Status::Ok();
  }

  template <typename T>
  Status Read(T* out, const char* what) {
    SUBQ_RETURN_IF_ERROR(Need(sizeof(T), what));
    std::memcpy(out, data_ + pos_, sizeof(T));  // files are little-endian, as is every supported host
    pos_ += sizeof(T);
    return Status::Ok();
  }

  // A uint64 length followed by that many bytes (GGUF string). Lengths above max_len are rejected.
  Status ReadString(std::string* out, const char* what, uint64_t max_len = uint64_t{1} << 30) {
    uint64_t n = 0;
    SUBQ_RETURN_IF_ERROR(Read(&n, what));
    if (n > max_len) return Errorf("{}: {} at offset {} has an implausible length {}", path_, what, pos_ - 8, n);
    SUBQ_RETURN_IF_ERROR(Need(n, what));
    out->assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return Status::Ok();
  }

  Status Skip(uint64_t n, const char* what) {
    SUBQ_RETURN_IF_ERROR(Need(n, what));
    pos_ += n;
    return Status::Ok();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string path_;
};

// `s` made safe for a one-line error message: control bytes escaped, long names cut.
inline std::string PrintableName(const std::string& s, size_t max_len = 80) {
  std::string out;
  for (char ch : s.substr(0, max_len)) {
    const auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c == 0x7f) ? fmt::format("\\x{:02x}", c) : std::string(1, ch);
  }
  return s.size() > max_len ? out + "..." : out;
}

// a * b into *out; true on uint64 overflow.
inline bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace subq
