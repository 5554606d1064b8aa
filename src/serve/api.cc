#include "serve/api.h"

#include <cmath>
#include <limits>

namespace subq::serve {
namespace {

using nlohmann::json;

ApiError Bad(std::string msg, std::string param) { return ApiError{400, std::move(msg), "invalid_request_error", param}; }

// Typed field readers: absent or null leaves `out` unchanged; a wrong type or range is an error.
std::optional<ApiError> GetInt(const json& j, const char* k, int lo, int hi, int& out) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() && !(it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()))
    return Bad(fmt::format("'{}' must be an integer", k), k);
  const double v = it->get<double>();
  if (v < lo || v > hi) return Bad(fmt::format("'{}' must be between {} and {}", k, lo, hi), k);
  out = static_cast<int>(v);
  return std::nullopt;
}

std::optional<ApiError> GetFloat(const json& j, const char* k, double lo, double hi, float& out) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return Bad(fmt::format("'{}' must be a number", k), k);
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi)) return Bad(fmt::format("'{}' must be between {} and {}", k, lo, hi), k);
  out = static_cast<float>(v);
  return std::nullopt;
}

std::optional<ApiError> GetBool(const json& j, const char* k, bool& out) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return Bad(fmt::format("'{}' must be a boolean", k), k);
  out = it->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> GetStop(const json& j, std::vector<std::string>& out) {
  auto it = j.find("stop");
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) {
    if (!it->get_ref<const std::string&>().empty()) out.push_back(it->get<std::string>());
    return std::nullopt;
  }
  if (!it->is_array() || it->size() > 4) return Bad("'stop' must be a string or an array of up to 4 strings", "stop");
  for (const auto& s : *it) {
    if (!s.is_string()) return Bad("'stop' must be a string or an array of up to 4 strings", "stop");
    if (!s.get_ref<const std::string&>().empty()) out.push_back(s.get<std::string>());
  }
  return std::nullopt;
}

std::optional<ApiError> GetPrompt(const json& j, const ApiLimits& lim, ApiRequest& r) {
  auto it = j.find("prompt");
  if (it == j.end() || it->is_null()) return Bad("'prompt' is required", "prompt");
  const json* p = &*it;
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
    return std::nullopt;
  }
  if (p->is_array() && !p->empty()) {
    for (const auto& t : *p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= lim.vocab)
        return Bad(fmt::format("'prompt' token ids must be integers in [0, {})", lim.vocab), "prompt");
      r.prompt_ids.push_back(t.get<int>());
    }
    return std::nullopt;
  }
  return Bad("'prompt' must be a string, one string in an array, or an array of token ids", "prompt");
}

std::optional<ApiError> GetMessages(const json& j, ApiRequest& r) {
  auto it = j.find("messages");
  if (it == j.end() || !it->is_array() || it->empty()) return Bad("'messages' must be a non-empty array", "messages");
  for (const auto& m : *it) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      return Bad("each message needs a string 'role'", "messages");
    ChatMessage cm{m["role"].get<std::string>(), ""};
    auto c = m.find("content");
    if (c != m.end() && c->is_string()) {
      cm.content = c->get<std::string>();
    } else if (c != m.end() && c->is_array()) {  // content parts: only text parts are understood
      for (const auto& part : *c) {
        if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") || !part["text"].is_string())
          return Bad("message content parts must be {\"type\": \"text\", \"text\": ...}", "messages");
        cm.content += part["text"].get<std::string>();
      }
    } else if (c != m.end() && !c->is_null()) {
      return Bad("message 'content' must be a string or an array of text parts", "messages");
    }
    r.messages.push_back(std::move(cm));
  }
  return std::nullopt;
}

}  // namespace

std::string ErrorBody(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"code", nullptr}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  return json{{"error", err}}.dump();
}

int JsonDepth(const std::string& text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escape = false;
  for (char c : text) {
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

std::variant<ApiRequest, ApiError> ParseRequest(const std::string& body, bool chat, const ApiLimits& lim) {
  if (JsonDepth(body) > lim.max_depth) return Bad(fmt::format("JSON nested deeper than {}", lim.max_depth), "");
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("the body is not valid JSON", "");
  if (!j.is_object()) return Bad("the body must be a JSON object", "");
  ApiRequest r;
  r.chat = chat;
  if (auto m = j.find("model"); m != j.end() && !m->is_null()) {
    if (!m->is_string()) return Bad("'model' must be a string", "model");
    r.model = m->get<std::string>();
  }
  std::optional<ApiError> e = chat ? GetMessages(j, r) : GetPrompt(j, lim, r);
  if (e) return *e;
  GenParams& p = r.params;
  if (chat) p.max_tokens = 0;  // chat default: up to the context limit
  if ((e = GetInt(j, "max_tokens", 1, lim.max_tokens, p.max_tokens))) return *e;
  if (chat && (e = GetInt(j, "max_completion_tokens", 1, lim.max_tokens, p.max_tokens))) return *e;
  p.sampler.temperature = 1.0f;
  if ((e = GetFloat(j, "temperature", 0.0, 2.0, p.sampler.temperature))) return *e;
  if ((e = GetFloat(j, "top_p", 0.0, 1.0, p.sampler.top_p))) return *e;
  if (p.sampler.top_p <= 0.0f) return Bad("'top_p' must be greater than 0", "top_p");
  if ((e = GetInt(j, "n", 1, lim.max_n, r.n))) return *e;
  int seed = 0;
  if ((e = GetInt(j, "seed", std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), seed))) return *e;
  r.seeded = j.contains("seed") && !j["seed"].is_null();
  p.sampler.seed = static_cast<uint64_t>(static_cast<uint32_t>(seed));
  if ((e = GetStop(j, p.stop))) return *e;
  if ((e = GetBool(j, "stream", r.stream))) return *e;
  // vLLM's extension (its load benchmarks use it): generate through end-of-sequence tokens up to max_tokens.
  if ((e = GetBool(j, "ignore_eos", p.ignore_eos))) return *e;
  if (auto so = j.find("stream_options"); so != j.end() && !so->is_null()) {
    if (!so->is_object()) return Bad("'stream_options' must be an object", "stream_options");
    if ((e = GetBool(*so, "include_usage", r.include_usage))) return *e;
  }
  if (chat) {
    bool lp = false;
    if ((e = GetBool(j, "logprobs", lp))) return *e;
    if ((e = GetInt(j, "top_logprobs", 0, 20, r.top_logprobs))) return *e;
    if (lp) p.logprobs = r.top_logprobs;
  } else {
    if ((e = GetInt(j, "logprobs", 0, 5, p.logprobs))) return *e;
    bool echo = false;
    if ((e = GetBool(j, "echo", echo))) return *e;
    if (echo) return Bad("'echo' is not supported", "echo");
  }
  for (const char* k : {"presence_penalty", "frequency_penalty"}) {
    float penalty = 0;
    if ((e = GetFloat(j, k, -2.0, 2.0, penalty))) return *e;
    if (penalty != 0.0f) return Bad(fmt::format("'{}' is not supported (only 0)", k), k);
  }
  return r;
}

}  // namespace subq::serve
