// The fingerprint of a training run: everything that determines its result — the recipe after
// overrides, the identity (size and CRC-32 of the contents) of the teacher and data files, and the
// world size. Checkpoints carry it; --resume refuses a checkpoint whose fingerprint differs, naming
// the differences. No torch here.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/recipe.h"
#include "util/status.h"

namespace subq::train {

// Size and CRC-32 of a file, or of every regular file of a folder (sorted by name).
Result<nlohmann::json> PathIdentity(const std::string& path);

// Reads every file it names (the teacher folder's files, the corpora) to checksum them.
Result<nlohmann::json> RunFingerprint(const Recipe& r, int world_size);

// "key: saved -> now" for every dotted key whose value differs (or exists on one side only); empty when
// the fingerprints agree.
std::vector<std::string> FingerprintDifferences(const nlohmann::json& saved, const nlohmann::json& now);

}  // namespace subq::train
