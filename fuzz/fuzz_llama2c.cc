// libFuzzer target: llama2.c .bin bytes -> ReadLlama2c.
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = subq::fuzz::WriteInput(data, size, ".bin");
  auto r = subq::ReadLlama2c(path);
  if (r.ok()) subq::fuzz::TouchAll(r->tensors);
  return 0;
}
