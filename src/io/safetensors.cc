// safetensors reader: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data section.
// Offsets are relative to the data section. Tensors are memory-mapped, never copied. Also the sharded
// form (model.safetensors.index.json with a weight_map naming the shard of every tensor).
#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/byte_cursor.h"
#include "io/checkpoint.h"
#include "io/json_read.h"

namespace subq {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit

bool ParseDType(const std::string& s, DType* out) {
  if (s == "F32") *out = DType::kF32;
  else if (s == "F16") *out = DType::kF16;
  else if (s == "BF16") *out = DType::kBF16;
  else if (s == "I8") *out = DType::kI8;  // q8 values (io/quantized.h)
  else if (s == "U8") *out = DType::kU8;  // q4 nibble pairs
  else return false;
  return true;
}

// Reads a JSON array of non-negative integers (each < 2^53, as JSON can carry them exactly).
bool ReadUintArray(const json& j, std::vector<uint64_t>* out) {
  if (!j.is_array()) return false;
  out->clear();
  for (const auto& e : j) {
    if (!e.is_number_unsigned() && !(e.is_number_integer() && e.get<int64_t>() >= 0)) return false;
    out->push_back(e.get<uint64_t>());
  }
  return true;
}

struct Extent {
  uint64_t begin, end;
  std::string name;
};

}  // namespace

Status ReadSafetensors(const std::string& path, TensorStore* store) {
  SUBQ_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  const uint64_t size = file->size();
  if (size < 8) return Errorf("{}: not a safetensors file: {} bytes is shorter than the 8-byte header length", path, size);
  uint64_t n = 0;
  std::memcpy(&n, file->data(), 8);
  if (n > kMaxHeaderBytes || n > size - 8)
    return Errorf("{}: safetensors header length {} runs past the end of the file ({} bytes)", path, n, size);
  const char* hdr = reinterpret_cast<const char*>(file->data() + 8);
  auto parsed = ParseJsonWithLimits(std::string_view(hdr, n), path + ": safetensors header");
  if (!parsed.ok()) return parsed.status();
  const json j = std::move(*parsed);
  if (!j.is_object()) return Errorf("{}: safetensors header is not a JSON object", path);
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = size - data_start;

  std::vector<Extent> extents;
  for (const auto& [raw_name, t] : j.items()) {
    if (raw_name == "__metadata__") continue;
    const std::string name = PrintableName(raw_name);  // for messages
    if (!t.is_object()) return Errorf("{}: entry for tensor '{}' is not a JSON object", path, name);
    auto dt = t.find("dtype");
    auto sh = t.find("shape");
    auto off = t.find("data_offsets");
    if (dt == t.end() || sh == t.end() || off == t.end())
      return Errorf("{}: tensor '{}' needs dtype, shape and data_offsets", path, name);
    if (!dt->is_string()) return Errorf("{}: tensor '{}': dtype is not a string", path, name);
    TensorInfo info;
    info.name = raw_name;
    info.file = path;
    const std::string dts = dt->get<std::string>();
    if (!ParseDType(dts, &info.dtype))
      return Errorf("{}: tensor '{}' has dtype '{}'; subq reads only F32, F16, BF16, I8 and U8", path, name,
                    PrintableName(dts));
    std::vector<uint64_t> shape, offsets;
    if (!ReadUintArray(*sh, &shape) || shape.size() > 8)
      return Errorf("{}: tensor '{}': shape must be a list of at most 8 non-negative integers", path, name);
    if (!ReadUintArray(*off, &offsets) || offsets.size() != 2)
      return Errorf("{}: tensor '{}': data_offsets must be [begin, end]", path, name);
    const uint64_t begin = offsets[0], end = offsets[1];
    if (begin > end || end > data_size)
      return Errorf("{}: tensor '{}' data_offsets [{}, {}] lie outside the data section ({} bytes)", path, name, begin,
                    end, data_size);
    uint64_t numel = std::find(shape.begin(), shape.end(), 0) != shape.end() ? 0 : 1;
    for (uint64_t d : shape) {
      if (numel == 0) break;
      if (__builtin_mul_overflow(numel, d, &numel) || numel > data_size)
        return Errorf("{}: tensor '{}' shape [{}] is larger than the file", path, name, fmt::join(shape, ", "));
    }
    const uint64_t want = numel * DTypeSize(info.dtype);
    if (want != end - begin)
      return Errorf("{}: tensor '{}' is {} [{}] = {} bytes, but data_offsets [{}, {}] span {} bytes", path, name, dts,
                    fmt::join(shape, ", "), want, begin, end, end - begin);
    info.shape.assign(shape.begin(), shape.end());
    info.data = file->data() + data_start + begin;
    info.nbytes = end - begin;
    extents.push_back({begin, end, name});  // printable name
    SUBQ_RETURN_IF_ERROR(store->Add(std::move(info)));
  }
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < extents.size(); ++i)
    if (extents[i].begin < extents[i - 1].end)
      return Errorf("{}: tensors '{}' and '{}' overlap in the data section", path, extents[i - 1].name,
                    extents[i].name);
  store->KeepAlive(std::move(file));
  return Status::Ok();
}

Status ReadShardedSafetensors(const std::string& index_path, TensorStore* store) {
  SUBQ_ASSIGN_OR_RETURN(const json j, ReadJsonFileWithLimits(index_path));
  auto wm = j.is_object() ? j.find("weight_map") : j.end();
  if (!j.is_object() || wm == j.end() || !wm->is_object())
    return Errorf("{}: no \"weight_map\" object", index_path);
  const std::string dir = index_path.substr(0, index_path.find_last_of('/') + 1);
  std::map<std::string, std::string> tensor_to_file;
  std::set<std::string> files;
  for (const auto& [name, f] : wm->items()) {
    if (!f.is_string())
      return Errorf("{}: weight_map entry '{}' is not a file name", index_path, PrintableName(name));
    const std::string fname = f.get<std::string>();
    if (fname.empty() || fname.find('/') != std::string::npos || fname == "." || fname == "..")
      return Errorf("{}: weight_map entry '{}' names '{}', which is not a file in the same folder", index_path,
                    PrintableName(name), PrintableName(fname));
    tensor_to_file[name] = dir + fname;
    files.insert(dir + fname);
  }
  if (files.empty()) return Errorf("{}: weight_map is empty", index_path);
  for (const auto& f : files) SUBQ_RETURN_IF_ERROR(ReadSafetensors(f, store));
  for (const auto& [name, f] : tensor_to_file) {
    const TensorInfo* t = store->Find(name);
    if (t == nullptr || t->file != f)
      return Errorf("{}: tensor '{}' is mapped to {} but that file does not contain it", index_path,
                    PrintableName(name), f);
  }
  return Status::Ok();
}

}  // namespace subq
