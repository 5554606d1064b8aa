#include "io/checkpoint_manifest.h"

#include <zlib.h>

#include <algorithm>
#include <limits>

#include "io/json_read.h"

namespace subq {

using json = nlohmann::json;

uint32_t Crc32(const void* data, size_t size) { return Crc32Continue(0, data, size); }

uint32_t Crc32Continue(uint32_t start, const void* data, size_t size) {
  uLong crc = start;
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {  // zlib takes uInt lengths
    const uInt n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, p, n);
    p += n;
    size -= n;
  }
  return static_cast<uint32_t>(crc);
}

std::string CheckpointManifest::ToJson() const {
  json recs = json::array();
  for (const auto& [name, crc] : records) recs.push_back({name, crc});
  const json j = {{"seq", seq},           {"file", file},         {"bytes", bytes},      {"crc32", crc32},
                  {"progress", progress}, {"records", recs},      {"fingerprint", fingerprint}};
  return j.dump(1) + "\n";
}

Result<CheckpointManifest> ParseCheckpointManifest(std::string_view text, const std::string& origin) {
  SUBQ_ASSIGN_OR_RETURN(const json j, ParseJsonWithLimits(text, origin));
  if (!j.is_object()) return Errorf("{}: checkpoint manifest is not a JSON object", origin);
  for (const char* key : {"seq", "file", "bytes", "crc32", "progress", "records", "fingerprint"})
    if (!j.contains(key)) return Errorf("{}: checkpoint manifest has no '{}'", origin, key);
  CheckpointManifest m;
  SUBQ_ASSIGN_OR_RETURN(m.seq, JsonIntInRange(j["seq"], origin + ": seq", 0, std::numeric_limits<int64_t>::max()));
  SUBQ_ASSIGN_OR_RETURN(const int64_t bytes, JsonIntInRange(j["bytes"], origin + ": bytes", 0,
                                                            std::numeric_limits<int64_t>::max()));
  m.bytes = static_cast<uint64_t>(bytes);
  SUBQ_ASSIGN_OR_RETURN(const int64_t crc, JsonIntInRange(j["crc32"], origin + ": crc32", 0, 0xFFFFFFFFll));
  m.crc32 = static_cast<uint32_t>(crc);
  if (!j["file"].is_string() || !j["progress"].is_string())
    return Errorf("{}: checkpoint manifest 'file' and 'progress' must be strings", origin);
  m.file = j["file"].get<std::string>();
  m.progress = j["progress"].get<std::string>();
  if (m.file.empty() || m.file.find('/') != std::string::npos || m.file == "." || m.file == "..")
    return Errorf("{}: checkpoint manifest names file '{}', not a plain file name", origin, m.file);
  if (!j["records"].is_array()) return Errorf("{}: checkpoint manifest 'records' must be a list", origin);
  for (const json& r : j["records"]) {
    if (!r.is_array() || r.size() != 2 || !r[0].is_string())
      return Errorf("{}: checkpoint manifest record {} is not [name, crc32]", origin, m.records.size());
    SUBQ_ASSIGN_OR_RETURN(const int64_t rc, JsonIntInRange(r[1], origin + ": record crc32", 0, 0xFFFFFFFFll));
    m.records.emplace_back(r[0].get<std::string>(), static_cast<uint32_t>(rc));
  }
  if (!j["fingerprint"].is_object()) return Errorf("{}: checkpoint manifest 'fingerprint' must be an object", origin);
  m.fingerprint = j["fingerprint"];
  return m;
}

}  // namespace subq
