// Shared by the libFuzzer targets: the input is written to one temp file per process (the readers
// take paths and memory-map them), and every tensor a reader accepts is read in full so that
// AddressSanitizer sees any pointer that lies outside the mapping.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/checkpoint.h"

namespace subq::fuzz {

// Writes data to a per-process temp file with the given suffix and returns its path.
inline const std::string& WriteInput(const uint8_t* data, size_t size, const char* suffix) {
  static std::string path = [suffix] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir ? dir : "/tmp") + "/subq_fuzz_" + std::to_string(::getpid()) + suffix;
  }();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return path;
}

// Converts every tensor to f32 (touches every byte the reader pointed at).
inline void TouchAll(const TensorStore& store) {
  volatile float sink = 0;
  for (const auto& t : store.tensors()) {
    auto r = store.LoadAny(t.name);
    if (!r.ok()) std::abort();  // a tensor the reader accepted must load
    if (!r->data.empty()) sink = sink + r->data.front() + r->data.back();
  }
  (void)sink;
}

}  // namespace subq::fuzz
