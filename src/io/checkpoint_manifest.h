// The manifest written beside each training checkpoint (train/checkpoint_store.h): which file it
// describes, that file's size and CRC-32, a CRC-32 per parameter record (to name a damaged tensor), and
// the run fingerprint (train/run_fingerprint.h) that --resume compares. JSON, read with limits like
// every other JSON input. No torch here (the fuzzer reads manifests too).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace subq {

// zlib's CRC-32 of a byte range; Crc32Continue extends `crc` (of earlier bytes) over more bytes.
uint32_t Crc32(const void* data, size_t size);
uint32_t Crc32Continue(uint32_t crc, const void* data, size_t size);

struct CheckpointManifest {
  int64_t seq = 0;         // save counter of the run: larger is newer
  std::string file;        // checkpoint file name, in the manifest's folder (no path separators)
  uint64_t bytes = 0;      // its size
  uint32_t crc32 = 0;      // its CRC-32
  std::string progress;    // human-readable position, e.g. "stage 3 step 12"
  std::vector<std::pair<std::string, uint32_t>> records;  // parameter name -> CRC-32 of its bytes
  nlohmann::json fingerprint = nlohmann::json::object();

  std::string ToJson() const;
};

// Parses and validates a manifest (types, ranges, a plain file name); errors name `origin`.
Result<CheckpointManifest> ParseCheckpointManifest(std::string_view text, const std::string& origin);

}  // namespace subq
