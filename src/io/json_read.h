// JSON inputs read with limits: a nesting-depth check before the document is built (code that walks a
// document recursively — nlohmann's copy, our tokenizer.json component loaders — would otherwise
// overflow the stack on a crafted file) and integer fields checked against a range instead of
// wrapping through nlohmann's get<int>().
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace subq {

// Far deeper than any real tokenizer.json / config.json / safetensors header (at most ~6 levels).
inline constexpr int kMaxJsonDepth = 64;

// Parses `text`; errors (naming `origin`) for malformed JSON and for nesting deeper than max_depth.
Result<nlohmann::json> ParseJsonWithLimits(std::string_view text, const std::string& origin,
                                           int max_depth = kMaxJsonDepth);
// Reads a whole file and parses it as above.
Result<nlohmann::json> ReadJsonFileWithLimits(const std::string& path, int max_depth = kMaxJsonDepth);

// `v` as an integer in [lo, hi]; `what` names the field in the error (e.g. "path: vocab token 'x' id").
Result<int64_t> JsonIntInRange(const nlohmann::json& v, const std::string& what, int64_t lo, int64_t hi);

}  // namespace subq
