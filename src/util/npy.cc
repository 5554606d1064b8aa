#include "util/npy.h"

#include <cstdio>

namespace subq {

Status WriteNpy(const Tensor& t, const std::string& path) {
  std::string shape;
  for (auto d : t.shape) shape += std::to_string(d) + ",";
  if (t.shape.size() > 1) shape.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return Errorf("{}: cannot open for writing", path);
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const uint16_t len = static_cast<uint16_t>(header.size());
  bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(&len, 2, 1, f) == 1 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(t.ptr(), 4, t.numel(), f) == static_cast<size_t>(t.numel());
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return Errorf("{}: write failed", path);
  return Status::Ok();
}

}  // namespace subq
