#include "io/safetensors_write.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

namespace subq {

Status WriteSafetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  std::vector<const TensorBytes*> order;
  for (const TensorBytes& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(),
                   [](auto* a, auto* b) { return DTypeSize(a->dtype) > DTypeSize(b->dtype); });
  size_t offset = 0;
  for (const TensorBytes* tp : order) {
    const TensorBytes& t = *tp;
    if (t.name.empty() || t.name == "__metadata__") return Errorf("{}: bad tensor name '{}'", path, t.name);
    if (!names.insert(t.name).second) return Errorf("{}: tensor '{}' written twice", path, t.name);
    if (static_cast<size_t>(Tensor::NumelOf(t.shape)) * DTypeSize(t.dtype) != t.nbytes)
      return Errorf("{}: tensor '{}' is {} {} but has {} bytes", path, t.name, DTypeName(t.dtype), ShapeStr(t.shape),
                    t.nbytes);
    header[t.name] = {{"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
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
  for (const TensorBytes* t : order) {
    if (!ok) break;
    ok = t->nbytes == 0 || std::fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
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

Status WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  std::vector<TensorBytes> views;
  for (const auto& [name, t] : tensors) {
    if (Tensor::NumelOf(t.shape) != t.numel())
      return Errorf("{}: tensor '{}' has shape {} but {} values", path, name, ShapeStr(t.shape), t.numel());
    views.push_back({name, DType::kF32, t.shape, t.data.data(), t.data.size() * sizeof(float)});
  }
  return WriteSafetensors(path, views, metadata);
}

}  // namespace subq
