// Internal to the Jinja subset (serve/jinja.h): the expression and template trees that jinja_parse.cc
// builds and jinja.cc renders. Values are nlohmann::json; undefined is a discarded json value.
#pragma once
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace subq::serve::jinja {

using json = nlohmann::json;

// Parse and render errors travel as this exception inside the renderer; Template's Parse/Render turn it
// into a Status at the edge (templates are parsed once per model and rendered once per request).
// Parse and render errors travel as this exception inside the file; Parse/Render turn it into a Status.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline json Undefined() { return json(json::value_t::discarded); }
inline bool IsUndef(const json& v) { return v.is_discarded(); }

// ---- expressions -------------------------------------------------------------------------------------
struct Expr {
  enum Kind { kLit, kVar, kAttr, kIndex, kSlice, kCall, kFilter, kTest, kNot, kNeg, kBin, kCond, kList, kDict } kind;
  std::string name;  // variable / attribute / filter / test / operator
  json lit;
  std::vector<std::unique_ptr<Expr>> args;   // operands, call arguments
  std::vector<std::string> kw;               // keyword of each call argument ("" when positional)
  bool negate = false;                       // `is not`
};
using ExprP = std::unique_ptr<Expr>;

inline ExprP Make(Expr::Kind k, std::string name = "") {
  auto e = std::make_unique<Expr>();
  e->kind = k;
  e->name = std::move(name);
  return e;
}

struct Node {
  enum Kind { kSeq, kText, kOut, kIf, kFor, kSet } kind = kSeq;
  std::string text;                       // kText
  ExprP expr;                             // kOut, kFor (iterable), kSet (value)
  std::vector<std::unique_ptr<Node>> kids;  // kSeq
  std::vector<ExprP> conds;               // kIf: one per branch (null: else)
  std::vector<std::unique_ptr<Node>> branches;  // kIf branches, kFor: body and else
  std::vector<std::string> vars;          // kFor targets; kSet: name (+ attribute)
  ExprP filter;                           // kFor `if` clause
};


// The template tree of `source` (text, {{ }}, {% %} with HF's trim_blocks + lstrip_blocks); throws Error.
std::unique_ptr<Node> ParseTree(const std::string& source);

}  // namespace subq::serve::jinja
