#include "io/safetensors_write.h"

#include <cstdio>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

namespace subq {

Status WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__") return Errorf("{}: bad tensor name '{}'", path, name);
    if (!names.insert(name).second) return Errorf("{}: tensor '{}' written twice", path, name);
    if (Tensor::NumelOf(t.shape) != t.numel())
      return Errorf("{}: tensor '{}' has shape {} but {} values", path, name, ShapeStr(t.shape), t.numel());
    const size_t nbytes = t.data.size() * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Errorf("{}: cannot open for writing", tmp);
  uint64_t hlen = h.size();
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(hlen >> (8 * i));
  bool ok = std::fwrite(len_bytes, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (const auto& [name, t] : tensors) {
    if (!ok) break;
    ok = t.data.empty() || std::fwrite(t.data.data(), sizeof(float), t.data.size(), f) == t.data.size();
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    return Errorf("{}: write failed", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Errorf("{}: cannot rename to {}: {}", tmp, path, ec.message());
  return Status::Ok();
}

}  // namespace subq
