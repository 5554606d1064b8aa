// libFuzzer target: request bodies of /v1/completions and /v1/chat/completions -> ParseRequest (types,
// ranges, depth), and the parsed chat messages through a ChatML-style template with loops, filters,
// slices and namespace() (the Jinja subset renders whatever text a client sends).
#include <memory>
#include <string>

#include "serve/api.h"
#include "serve/chat_template.h"

namespace {

const char* kTemplate =
    "{% set ns = namespace(system='') %}{% for m in messages if m.role == 'system' %}{% set ns.system = m.content "
    "| trim %}{% endfor %}{% if ns.system %}{{ '<|system|>\\n' + ns.system + eos_token }}{% endif %}"
    "{% for m in messages[-8:] %}{% if m['role'] not in ['system'] %}{{ '<|' ~ m.role ~ '|>\\n' }}"
    "{{- m.content.strip() | default('') }}{% if not loop.last %}{{ eos_token }}{% endif %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<subq::serve::ChatTemplate> tmpl = [] {
    auto t = subq::serve::ChatTemplate::FromSource(kTemplate, "<s>", "</s>");
    if (!t.ok()) std::abort();
    return std::move(*t);
  }();
  const std::string body(reinterpret_cast<const char*>(data), size);
  subq::serve::ApiLimits lim;
  lim.vocab = 512;
  for (bool chat : {false, true}) {
    auto r = subq::serve::ParseRequest(body, chat, lim);
    if (auto* req = std::get_if<subq::serve::ApiRequest>(&r); req && chat) (void)tmpl->Apply(req->messages, true);
    if (auto* e = std::get_if<subq::serve::ApiError>(&r); e && (e->status != 400 || e->message.empty())) std::abort();
  }
  // The same bytes as a template: parsing and rendering untrusted template text must fail cleanly.
  if (auto t = subq::serve::ChatTemplate::FromSource(body, "<s>", "</s>"); t.ok())
    (void)(*t)->Apply({{"user", "hi"}, {"assistant", "ho"}}, true);
  return 0;
}
