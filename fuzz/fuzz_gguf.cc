// libFuzzer target: GGUF bytes -> ReadGguf (and the ReadCheckpoint dispatch by magic).
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = subq::fuzz::WriteInput(data, size, ".gguf");
  auto r = subq::ReadGguf(path);
  if (r.ok()) {
    subq::fuzz::TouchAll(r->tensors);
    size_t n = 0;
    for (const auto& line : r->metadata) n += line.size();
    for (const auto& t : r->vocab.tokens) n += t.size();
    if (n == SIZE_MAX) std::abort();
  }
  return 0;
}
