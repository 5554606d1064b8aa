// Plain-text corpora: documents separated by "<|endoftext|>" (TinyStories style) or a whole file as one
// document. Each document is encoded with BOS and the results concatenated.
#pragma once
#include <string>
#include <vector>

#include "io/tokenizer.h"

namespace subq {

Result<std::vector<std::string>> ReadDocuments(const std::string& path);
Result<std::vector<int>> TokenizeTextFile(const std::string& path, const Tokenizer& tok);

}  // namespace subq
