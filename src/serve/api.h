// The OpenAI request schema: parsing and validating /v1/completions and /v1/chat/completions bodies
// (types, ranges, JSON depth) into what the engine needs, and the OpenAI-style error object. Nothing here
// touches a model, so the fuzzer drives it directly (fuzz/fuzz_serve_request.cc).
#pragma once
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/chat_template.h"
#include "serve/request.h"

namespace subq::serve {

struct ApiError {
  int status = 400;  // HTTP status
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending field, "" when none
};
// {"error": {"message", "type", "param", "code"}}
std::string ErrorBody(const ApiError& e);

struct ApiRequest {
  bool chat = false;
  std::string model;
  std::string prompt;           // completions: prompt text (when prompt_ids is empty)
  std::vector<int> prompt_ids;  // completions: a prompt given as token ids
  std::vector<ChatMessage> messages;  // chat
  GenParams params;             // chat without max_tokens: params.max_tokens == 0 (up to the context)
  bool seeded = false;          // params.sampler.seed came from the request
  int n = 1;
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage
  int top_logprobs = 0;         // chat: logprobs true -> params.logprobs = top_logprobs
};

struct ApiLimits {
  int max_n = 16;
  int max_tokens = 1 << 20;     // upper bound before the context check (done with the prompt's length)
  int vocab = 1 << 30;          // token ids in prompts must be below this
  int max_depth = 16;           // JSON nesting
};

// Parses a request body; an ApiError (400) for bad JSON, wrong types, out-of-range values.
std::variant<ApiRequest, ApiError> ParseRequest(const std::string& body, bool chat, const ApiLimits& lim);

// Deepest nesting of arrays/objects in `text` outside strings (a cheap pre-check before parsing).
int JsonDepth(const std::string& text);

}  // namespace subq::serve
