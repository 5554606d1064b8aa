// libFuzzer target: llama2.c tokenizer.bin bytes -> the llama2.c vocabulary reader; an accepted
// tokenizer encodes and decodes a fixed text (whole and streamed) and decodes ids from the input's tail.
#include "fuzz_tokenizer_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  subq::fuzz::ExerciseTokenizer(subq::fuzz::WriteInput(data, size, ".bin"), data, size);
  return 0;
}
