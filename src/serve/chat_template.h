// Chat templates: the `chat_template` of a model's tokenizer_config.json, rendered with the Jinja subset
// of serve/jinja.h, turns OpenAI chat messages into the prompt text the model was tuned on.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "serve/jinja.h"
#include "util/status.h"

namespace subq::serve {

struct ChatMessage {
  std::string role, content;
};

class ChatTemplate {
 public:
  // From a tokenizer_config.json (the "default" one when chat_template is a list of named templates).
  // Ok(nullptr) when the file has no chat_template.
  static Result<std::unique_ptr<ChatTemplate>> FromTokenizerConfig(const std::string& path);
  static Result<std::unique_ptr<ChatTemplate>> FromSource(const std::string& source, std::string bos,
                                                          std::string eos);
  // The prompt text for `messages`, ending with the assistant's turn opener when add_generation_prompt.
  Result<std::string> Apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

 private:
  ChatTemplate(jinja::Template t, std::string bos, std::string eos)
      : tmpl_(std::move(t)), bos_(std::move(bos)), eos_(std::move(eos)) {}
  jinja::Template tmpl_;
  std::string bos_, eos_;
};

}  // namespace subq::serve
