#include "serve/chat_template.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace subq::serve {
namespace {

using nlohmann::json;

// bos_token / eos_token are a string or an AddedToken object {"content": ...}.
std::string TokenText(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return "";
}

}  // namespace

Result<std::unique_ptr<ChatTemplate>> ChatTemplate::FromTokenizerConfig(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Errorf("cannot open {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  json cfg = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded() || !cfg.is_object()) return Errorf("{}: not a JSON object", path);
  auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return std::unique_ptr<ChatTemplate>();
  std::string source;
  if (it->is_string()) {
    source = it->get<std::string>();
  } else if (it->is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
    for (const auto& t : *it)
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
        source = t["template"].get<std::string>();
    if (source.empty()) return Errorf("{}: chat_template has no template named \"default\"", path);
  } else {
    return Errorf("{}: chat_template must be a string or a list of named templates", path);
  }
  auto t = FromSource(source, TokenText(cfg, "bos_token"), TokenText(cfg, "eos_token"));
  if (!t.ok()) return Errorf("{}: {}", path, t.status().message());
  return t;
}

Result<std::unique_ptr<ChatTemplate>> ChatTemplate::FromSource(const std::string& source, std::string bos,
                                                               std::string eos) {
  SUBQ_ASSIGN_OR_RETURN(jinja::Template t, jinja::Template::Parse(source));
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(t), std::move(bos), std::move(eos)));
}

Result<std::string> ChatTemplate::Apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  json msgs = json::array();
  for (const auto& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  json ctx = {{"messages", msgs}, {"add_generation_prompt", add_generation_prompt}, {"bos_token", bos_},
              {"eos_token", eos_}};
  return tmpl_.Render(ctx);
}

}  // namespace subq::serve
