// libFuzzer target: SentencePiece tokenizer.model bytes -> the SentencePiece library through our
// loader; an accepted tokenizer encodes and decodes a fixed text (whole and streamed).
#include "fuzz_tokenizer_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  subq::fuzz::ExerciseTokenizer(subq::fuzz::WriteInput(data, size, ".model"), data, size);
  return 0;
}
