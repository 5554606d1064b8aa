// Plain-text corpora: documents separated by "<|endoftext|>" (TinyStories style) or a whole file as one
// document. Each document is encoded with BOS and the results concatenated.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer.h"

namespace subq {

// Errors (with the byte offset) unless `text` is UTF-8 text: a binary file or another encoding would
// otherwise be tokenised into byte tokens without a word.
Status CheckUtf8Text(std::string_view text, const std::string& path);

Result<std::vector<std::string>> ReadDocuments(const std::string& path);
Result<std::vector<int>> TokenizeTextFile(const std::string& path, const Tokenizer& tok);

}  // namespace subq
