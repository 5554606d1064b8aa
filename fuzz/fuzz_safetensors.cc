// libFuzzer target: safetensors bytes -> ReadSafetensors.
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = subq::fuzz::WriteInput(data, size, ".safetensors");
  subq::TensorStore store;
  if (subq::ReadSafetensors(path, &store).ok()) subq::fuzz::TouchAll(store);
  return 0;
}
