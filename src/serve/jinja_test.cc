// The Jinja subset against the reference Jinja2 (trim_blocks + lstrip_blocks, as HF applies chat
// templates): real chat-template shapes (Llama-2, ChatML, Zephyr, a Llama-3-like one with namespace(),
// filtered loops and reversed slices); expected strings were rendered by Jinja2 3.1.
#include <gtest/gtest.h>

#include "serve/chat_template.h"

namespace subq::serve {
namespace {

const std::vector<ChatMessage> kMessages = {
    {"system", "  Be kind.  "}, {"user", "Hi there"}, {"assistant", " Hello! "}, {"user", "Tell me a story."}};

struct Case {
  const char* name;
  const char* source;
  const char* expected;
};

TEST(JinjaTest, RendersLikeJinja2) {
  const Case cases[] = {
    {"llama2", R"J({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})J",
     R"J(<s>[INST] <<SYS>>
  Be kind.  
<</SYS>>

Hi there [/INST] Hello! </s><s>[INST] Tell me a story. [/INST])J"},
    {"chatml", R"J({% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})J",
     R"J(<|im_start|>system
  Be kind.  <|im_end|>
<|im_start|>user
Hi there<|im_end|>
<|im_start|>assistant
 Hello! <|im_end|>
<|im_start|>user
Tell me a story.<|im_end|>
<|im_start|>assistant
)J"},
    {"zephyr", R"J({% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %})J",
     R"J(<|system|>
  Be kind.  </s>
<|user|>
Hi there</s>
<|assistant|>
 Hello! </s>
<|user|>
Tell me a story.</s>
<|assistant|>
)J"},
    {"ns_llama3", R"J({%- set ns = namespace(sys='none', n=0) -%}
{%- for m in messages -%}
  {%- if m.role == 'system' -%}{%- set ns.sys = m.content | trim -%}{%- endif -%}
  {%- set ns.n = ns.n + 1 -%}
{%- endfor -%}
{{- bos_token }}[{{ ns.sys }}|{{ ns.n }}]
{%- for m in messages[::-1] if m.role != 'system' %}
<|start_header_id|>{{ m['role'] }}<|end_header_id|>

{{ m['content'] | trim }}<|eot_id|>{{ loop.revindex }}{{ ',' if not loop.last else '' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})J",
     R"J(<s>[Be kind.|4]<|start_header_id|>user<|end_header_id|>

Tell me a story.<|eot_id|>3,<|start_header_id|>assistant<|end_header_id|>

Hello!<|eot_id|>2,<|start_header_id|>user<|end_header_id|>

Hi there<|eot_id|>1<|start_header_id|>assistant<|end_header_id|>

)J"},
  };
  for (const Case& c : cases) {
    auto t = ChatTemplate::FromSource(c.source, "<s>", "</s>");
    ASSERT_TRUE(t.ok()) << c.name << ": " << t.status().message();
    auto out = (*t)->Apply(kMessages, /*add_generation_prompt=*/true);
    ASSERT_TRUE(out.ok()) << c.name << ": " << out.status().message();
    EXPECT_EQ(*out, c.expected) << c.name;
  }
}

TEST(JinjaTest, RaiseExceptionIsAnError) {
  auto t = ChatTemplate::FromSource("{% for m in messages %}{% if m.role == 'user' and loop.index0 % 2 == 1 %}"
                                    "{{ raise_exception('roles must alternate') }}{% endif %}{% endfor %}", "", "");
  ASSERT_TRUE(t.ok());
  auto out = (*t)->Apply({{"user", "a"}, {"user", "b"}}, true);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("roles must alternate"), std::string::npos);
}

TEST(JinjaTest, ExpressionsFiltersAndTests) {
  auto t = ChatTemplate::FromSource(
      "{{ (1 + 2 * 3) ~ '|' ~ (7 // 2) ~ '|' ~ (-7 % 3) ~ '|' ~ 'abc'[1:] ~ '|' ~ [1, 2, 3][-1] ~ '|' ~ "
      "('x' if none is none else 'y') ~ '|' ~ (undefined_var is defined) ~ '|' ~ ' a '|trim|upper ~ '|' ~ "
      "['a', 'b']|join(',') ~ '|' ~ {'k': 'v'}.get('k') ~ '|' ~ messages|length ~ '|' ~ 'a,b'.split(',')|last ~ "
      "'|' ~ ('ab' in 'cabd') ~ '|' ~ (2 not in [1]) }}",
      "", "");
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto out = (*t)->Apply(kMessages, false);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(*out, "7|3|2|bc|3|x|False|A|a,b|v|4|b|True|True");
}

TEST(JinjaTest, MalformedTemplatesAreErrors) {
  for (const char* bad : {"{% if x %}", "{{ 1 + }}", "{% for x in %}{% endfor %}", "{{ 'open }}", "{% endif %}",
                          "{% macro m() %}{% endmacro %}", "{{ (((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1 }}"}) {
    EXPECT_FALSE(ChatTemplate::FromSource(bad, "", "").ok()) << bad;
  }
  auto t = ChatTemplate::FromSource("{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}", "", "");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE((*t)->Apply(kMessages, false).ok());  // runaway output is refused
}

}  // namespace
}  // namespace subq::serve
