// libFuzzer target: checkpoint manifest JSON -> ParseCheckpointManifest; an accepted manifest must
// round-trip through ToJson unchanged.
#include <cstdlib>
#include <string_view>

#include "io/checkpoint_manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = subq::ParseCheckpointManifest(std::string_view(reinterpret_cast<const char*>(data), size), "manifest");
  if (!m.ok()) return 0;
  auto again = subq::ParseCheckpointManifest(m->ToJson(), "round trip");
  if (!again.ok() || again->ToJson() != m->ToJson()) std::abort();
  return 0;
}
