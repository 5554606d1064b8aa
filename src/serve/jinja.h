// A renderer for the subset of Jinja2 that chat templates use. No Jinja library for C++ is packaged by
// Debian or PyPI (minja / Jinja2Cpp are not), so this file implements what HF chat templates need:
// text, {{ expr }}, {% if/elif/else %}, {% for x in xs [if c] %} with loop.index/index0/first/last/
// length, {% set x = e %} / {% set ns.x = e %} with namespace(), comments, whitespace control ({%- -%})
// with HF's trim_blocks + lstrip_blocks; expressions with literals, attribute/subscript/slice access,
// + - * / // % ~, comparisons, in / not in, and/or/not, `is [not] defined/none/string/...`, `a if c else b`,
// filters (trim, length, upper, lower, tojson, join, default, first, last, string, int, capitalize, safe)
// and string/dict methods (strip, startswith, endswith, split, items, get, keys, values), and
// raise_exception(). Values are nlohmann::json; undefined is a discarded json value.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace subq::serve::jinja {

struct Node;

class Template {
 public:
  static Result<Template> Parse(const std::string& source);
  Result<std::string> Render(const nlohmann::json& context) const;

 private:
  std::shared_ptr<const Node> root_;
};

}  // namespace subq::serve::jinja
