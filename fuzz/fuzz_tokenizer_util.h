// Shared by the tokenizer fuzz targets: load the input as a tokenizer file and, when it is accepted,
// run everything a command would (encode with and without BOS, whole and streamed decode, decode of
// arbitrary ids taken from the input) so ASan sees any bad index into the vocabulary tables.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "io/tokenizer.h"

namespace subq::fuzz {

inline void ExerciseTokenizer(const std::string& path, const uint8_t* data, size_t size) {
  auto tok = LoadTokenizer(path);
  if (!tok.ok()) return;
  const Tokenizer& t = **tok;
  const int v = t.vocab_size();
  if (v <= 0) std::abort();  // a loaded tokenizer has a vocabulary
  for (const char* text : {"", "Once upon a time, h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82 <s> </s> 12"}) {
    const std::vector<int> ids = t.Encode(text, /*add_bos=*/true);
    for (int id : ids)
      if (id < 0 || id >= v) std::abort();  // Encode must only produce ids of the vocabulary
    const std::string whole = t.Decode(ids);
    DecodeStream stream(t, {});
    for (int id : ids) (void)stream.Next(id);
  }
  // Ids from the input's last bytes (also out-of-range ones: Decode skips them).
  std::vector<int> ids;
  for (size_t i = size > 64 ? size - 64 : 0; i + 2 <= size; i += 2) {
    uint16_t x;
    std::memcpy(&x, data + i, 2);
    ids.push_back(static_cast<int>(x) - 8);
  }
  (void)t.Decode(ids);
  DecodeStream stream(t, {t.bos_id()});
  for (int id : ids)
    if (id >= 0 && id < v) (void)stream.Next(id);
}

}  // namespace subq::fuzz
