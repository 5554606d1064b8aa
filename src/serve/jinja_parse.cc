// Lexer and parser of the Jinja subset: expressions by recursive descent (Jinja's precedence), tags into
// a tree by the block structure.
#include <cctype>

#include <fmt/format.h>

#include "serve/jinja_ast.h"

namespace subq::serve::jinja {
namespace {

struct Tok {
  enum Kind { kName, kStr, kNum, kOp, kEnd } kind;
  std::string s;
  json num;
};

std::vector<Tok> Lex(const std::string& src) {
  std::vector<Tok> out;
  size_t i = 0;
  while (i < src.size()) {
    const char c = src[i];
    if (std::isspace(static_cast<unsigned char>(c))) { ++i; continue; }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < src.size() && (std::isalnum(static_cast<unsigned char>(src[j])) || src[j] == '_')) ++j;
      out.push_back({Tok::kName, src.substr(i, j - i), {}});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool fl = false;
      while (j < src.size() && (std::isdigit(static_cast<unsigned char>(src[j])) || src[j] == '.')) fl |= src[j++] == '.';
      const std::string t = src.substr(i, j - i);
      out.push_back({Tok::kNum, t, fl ? json(std::stod(t)) : json(std::stoll(t))});
      i = j;
    } else if (c == '"' || c == '\'') {
      std::string s;
      size_t j = i + 1;
      for (; j < src.size() && src[j] != c; ++j) {
        if (src[j] == '\\' && j + 1 < src.size()) {
          const char n = src[++j];
          s += n == 'n' ? '\n' : n == 't' ? '\t' : n == 'r' ? '\r' : n;
        } else {
          s += src[j];
        }
      }
      if (j >= src.size()) throw Error("unterminated string literal");
      out.push_back({Tok::kStr, s, {}});
      i = j + 1;
    } else {
      static const char* two[] = {"==", "!=", "<=", ">=", "//", "**"};
      std::string op(1, c);
      for (const char* t : two)
        if (src.compare(i, 2, t) == 0) op = t;
      if (std::string("+-*/%~<>=!()[]{}.,:|").find(c) == std::string::npos) throw Error(fmt::format("unexpected '{}'", c));
      out.push_back({Tok::kOp, op, {}});
      i += op.size();
    }
  }
  out.push_back({Tok::kEnd, "", {}});
  return out;
}

constexpr int kMaxNesting = 64;  // of expressions and of blocks: deeper templates are refused, not recursed

struct Nest {
  explicit Nest(int& d) : d_(d) {
    if (++d_ > kMaxNesting) throw Error("template nested too deeply");
  }
  ~Nest() { --d_; }
  int& d_;
};

class Parser {
 public:
  explicit Parser(std::vector<Tok> t) : t_(std::move(t)) {}
  bool AtEnd() const { return t_[p_].kind == Tok::kEnd; }
  bool IsName(const char* s) const { return t_[p_].kind == Tok::kName && t_[p_].s == s; }
  bool IsOp(const char* s) const { return t_[p_].kind == Tok::kOp && t_[p_].s == s; }
  bool EatName(const char* s) { return IsName(s) ? (++p_, true) : false; }
  bool EatOp(const char* s) { return IsOp(s) ? (++p_, true) : false; }
  void ExpectOp(const char* s) {
    if (!EatOp(s)) throw Error(fmt::format("expected '{}' near '{}'", s, t_[p_].s));
  }
  std::string Name() {
    if (t_[p_].kind != Tok::kName) throw Error(fmt::format("expected a name near '{}'", t_[p_].s));
    return t_[p_++].s;
  }
  void ExpectEnd() {
    if (!AtEnd()) throw Error(fmt::format("unexpected '{}'", t_[p_].s));
  }

  ExprP Expression() {
    ExprP e = Or();
    if (EatName("if")) {
      auto c = Make(Expr::kCond);
      c->args.push_back(Or());
      c->args.push_back(std::move(e));
      c->args.push_back(EatName("else") ? Expression() : nullptr);
      return c;
    }
    return e;
  }

 private:
  ExprP Bin(std::string op, ExprP a, ExprP b) {
    auto e = Make(Expr::kBin, std::move(op));
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }
  ExprP Or() {
    ExprP e = And();
    while (EatName("or")) e = Bin("or", std::move(e), And());
    return e;
  }
  ExprP And() {
    ExprP e = Not();
    while (EatName("and")) e = Bin("and", std::move(e), Not());
    return e;
  }
  ExprP Not() {
    Nest guard(depth_);
    if (EatName("not")) {
      auto e = Make(Expr::kNot);
      e->args.push_back(Not());
      return e;
    }
    return Compare();
  }
  ExprP Compare() {
    ExprP e = Concat();
    for (;;) {
      if (IsName("is")) {
        ++p_;
        auto t = Make(Expr::kTest);
        t->negate = EatName("not");
        t->name = Name();
        t->args.push_back(std::move(e));
        e = std::move(t);
      } else if (EatName("in")) {
        e = Bin("in", std::move(e), Concat());
      } else if (IsName("not") && t_[p_ + 1].kind == Tok::kName && t_[p_ + 1].s == "in") {
        p_ += 2;
        auto n = Make(Expr::kNot);
        n->args.push_back(Bin("in", std::move(e), Concat()));
        e = std::move(n);
      } else {
        bool found = false;
        for (const char* op : {"==", "!=", "<=", ">=", "<", ">"})
          if (EatOp(op)) {
            e = Bin(op, std::move(e), Concat());
            found = true;
            break;
          }
        if (!found) return e;
      }
    }
  }
  ExprP Concat() {
    ExprP e = Add();
    while (EatOp("~")) e = Bin("~", std::move(e), Add());
    return e;
  }
  ExprP Add() {
    ExprP e = Mul();
    for (;;) {
      if (EatOp("+")) e = Bin("+", std::move(e), Mul());
      else if (EatOp("-")) e = Bin("-", std::move(e), Mul());
      else return e;
    }
  }
  ExprP Mul() {
    ExprP e = Unary();
    for (;;) {
      bool found = false;
      for (const char* op : {"//", "*", "/", "%"})
        if (EatOp(op)) {
          e = Bin(op, std::move(e), Unary());
          found = true;
          break;
        }
      if (!found) return e;
    }
  }
  ExprP Unary() {
    Nest guard(depth_);
    if (EatOp("-")) {
      auto e = Make(Expr::kNeg);
      e->args.push_back(Unary());
      return e;
    }
    return Postfix(Primary());
  }
  void Args(Expr& call) {  // after '(' up to and including ')'
    while (!EatOp(")")) {
      std::string kw;
      if (t_[p_].kind == Tok::kName && t_[p_ + 1].kind == Tok::kOp && t_[p_ + 1].s == "=") {
        kw = t_[p_].s;
        p_ += 2;
      }
      call.kw.push_back(kw);
      call.args.push_back(Expression());
      if (!IsOp(")")) ExpectOp(",");
    }
  }
  ExprP Postfix(ExprP e) {
    for (;;) {
      if (EatOp(".")) {
        auto a = Make(Expr::kAttr, Name());
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (EatOp("[")) {
        auto ix = Make(Expr::kIndex);
        ix->args.push_back(std::move(e));
        ExprP parts[3];
        int colons = 0;
        while (!EatOp("]")) {
          if (EatOp(":")) {
            if (++colons > 2) throw Error("bad slice");
          } else {
            parts[colons] = Expression();
          }
        }
        if (colons > 0) ix->kind = Expr::kSlice;
        for (int i = 0; i <= (colons > 0 ? 2 : 0); ++i) ix->args.push_back(std::move(parts[i]));
        e = std::move(ix);
      } else if (EatOp("(")) {
        auto c = Make(Expr::kCall);
        c->args.push_back(std::move(e));
        c->kw.push_back("");
        Args(*c);
        e = std::move(c);
      } else if (EatOp("|")) {
        auto f = Make(Expr::kFilter, Name());
        f->args.push_back(std::move(e));
        f->kw.push_back("");
        if (EatOp("(")) Args(*f);
        e = std::move(f);
      } else {
        return e;
      }
    }
  }
  ExprP Primary() {
    const Tok& t = t_[p_];
    if (t.kind == Tok::kStr) {
      auto e = Make(Expr::kLit);
      e->lit = t_[p_++].s;
      while (t_[p_].kind == Tok::kStr) e->lit = e->lit.get<std::string>() + t_[p_++].s;  // "a" "b"
      return e;
    }
    if (t.kind == Tok::kNum) {
      auto e = Make(Expr::kLit);
      e->lit = t_[p_++].num;
      return e;
    }
    if (t.kind == Tok::kName) {
      const std::string n = t_[p_++].s;
      auto e = Make(Expr::kLit);
      if (n == "true" || n == "True") e->lit = true;
      else if (n == "false" || n == "False") e->lit = false;
      else if (n == "none" || n == "None") e->lit = nullptr;
      else e = Make(Expr::kVar, n);
      return e;
    }
    if (EatOp("(")) {
      ExprP e = Expression();
      if (EatOp(",")) {  // a tuple: treated as a list
        auto l = Make(Expr::kList);
        l->args.push_back(std::move(e));
        while (!IsOp(")")) {
          l->args.push_back(Expression());
          if (!IsOp(")")) ExpectOp(",");
        }
        e = std::move(l);
      }
      ExpectOp(")");
      return e;
    }
    if (EatOp("[")) {
      auto l = Make(Expr::kList);
      while (!EatOp("]")) {
        l->args.push_back(Expression());
        if (!IsOp("]")) ExpectOp(",");
      }
      return l;
    }
    if (EatOp("{")) {
      auto d = Make(Expr::kDict);
      while (!EatOp("}")) {
        d->args.push_back(Expression());
        ExpectOp(":");
        d->args.push_back(Expression());
        if (!IsOp("}")) ExpectOp(",");
      }
      return d;
    }
    throw Error(fmt::format("unexpected '{}'", t.s.empty() ? "end of expression" : t.s));
  }

  std::vector<Tok> t_;
  size_t p_ = 0;
  int depth_ = 0;
};


using NodeP = std::unique_ptr<Node>;

using NodeP = std::unique_ptr<Node>;

struct Segment {
  enum Kind { kText, kOut, kTag } kind;
  std::string body;
};

// Splits the source into text, {{ }} and {% %} segments, applying whitespace control ('-') and HF's
// trim_blocks (drop the newline after a tag) and lstrip_blocks (drop indentation before a tag).
std::vector<Segment> Split(const std::string& src) {
  std::vector<Segment> out;
  size_t i = 0;
  bool strip_next = false, trim_newline = false;
  while (i <= src.size()) {
    size_t open = src.find('{', i);
    while (open != std::string::npos && open + 1 < src.size() && std::string("{%#").find(src[open + 1]) == std::string::npos)
      open = src.find('{', open + 1);
    if (open + 1 >= src.size()) open = std::string::npos;
    std::string text = src.substr(i, open == std::string::npos ? std::string::npos : open - i);
    if (trim_newline && !text.empty() && text[0] == '\n') text.erase(0, 1);
    if (strip_next) text.erase(0, text.find_first_not_of(" \t\r\n") == std::string::npos ? text.size()
                                                                                          : text.find_first_not_of(" \t\r\n"));
    strip_next = trim_newline = false;
    if (open == std::string::npos) {
      out.push_back({Segment::kText, text});
      break;
    }
    const char kind = src[open + 1];
    const bool block = kind != '{';
    const bool strip_before = open + 2 < src.size() && src[open + 2] == '-';
    if (strip_before) {
      text.erase(text.find_last_not_of(" \t\r\n") + 1);
    } else if (block) {  // lstrip_blocks: only whitespace between the line start and the tag
      const size_t nl = text.find_last_of('\n');
      const size_t line = nl == std::string::npos ? 0 : nl + 1;
      if (text.find_first_not_of(" \t", line) == std::string::npos) text.erase(line);
    }
    out.push_back({Segment::kText, text});
    const std::string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t j = open + 2;
    char quote = 0;
    for (; j + 1 < src.size(); ++j) {
      if (quote) {
        if (src[j] == '\\') ++j;
        else if (src[j] == quote) quote = 0;
      } else if (kind != '#' && (src[j] == '"' || src[j] == '\'')) {
        quote = src[j];
      } else if (src.compare(j, 2, close) == 0) {
        break;
      }
    }
    if (j + 1 >= src.size()) throw Error("unclosed '{" + std::string(1, kind) + "'");
    size_t b0 = open + 2 + (strip_before ? 1 : 0), b1 = j;
    strip_next = b1 > b0 && src[b1 - 1] == '-';
    if (strip_next) --b1;
    if (kind != '#') out.push_back({kind == '{' ? Segment::kOut : Segment::kTag, src.substr(b0, b1 - b0)});
    trim_newline = block;
    i = j + 2;
  }
  return out;
}

class TreeBuilder {
 public:
  explicit TreeBuilder(std::vector<Segment> s) : s_(std::move(s)) {}
  NodeP Build() {
    std::string end;
    NodeP n = Body({}, &end);
    if (!end.empty()) throw Error("unexpected {% " + end + " %}");
    return n;
  }

 private:
  // Parses nodes until one of `stops` (its keyword goes to *stop, its parser stays in tag_).
  NodeP Body(const std::vector<std::string>& stops, std::string* stop) {
    Nest guard(depth_);
    auto seq = std::make_unique<Node>();
    while (i_ < s_.size()) {
      const Segment& sg = s_[i_++];
      if (sg.kind == Segment::kText) {
        if (sg.body.empty()) continue;
        auto t = std::make_unique<Node>();
        t->kind = Node::kText;
        t->text = sg.body;
        seq->kids.push_back(std::move(t));
        continue;
      }
      auto p = std::make_unique<Parser>(Lex(sg.body));
      if (sg.kind == Segment::kOut) {
        auto o = std::make_unique<Node>();
        o->kind = Node::kOut;
        o->expr = p->Expression();
        p->ExpectEnd();
        seq->kids.push_back(std::move(o));
        continue;
      }
      const std::string kw = p->Name();
      for (const auto& s : stops)
        if (kw == s) {
          *stop = kw;
          tag_ = std::move(p);
          return seq;
        }
      if (kw == "if") seq->kids.push_back(If(std::move(p)));
      else if (kw == "for") seq->kids.push_back(For(std::move(p)));
      else if (kw == "set") seq->kids.push_back(Set(std::move(p)));
      else if (kw == "generation" || kw == "endgeneration") continue;  // training-mask markers: no output
      else throw Error("unsupported or unexpected tag '" + kw + "'");
    }
    if (!stops.empty()) throw Error("missing {% " + stops.back() + " %}");
    return seq;
  }
  NodeP If(std::unique_ptr<Parser> p) {
    auto n = std::make_unique<Node>();
    n->kind = Node::kIf;
    ExprP cond = p->Expression();
    p->ExpectEnd();
    for (;;) {
      std::string stop;
      NodeP body = Body({"elif", "else", "endif"}, &stop);
      n->conds.push_back(std::move(cond));
      n->branches.push_back(std::move(body));
      if (stop == "endif") break;
      cond = stop == "elif" ? tag_->Expression() : nullptr;
      tag_->ExpectEnd();
      if (stop == "else") {
        NodeP last = Body({"endif"}, &stop);
        n->conds.push_back(nullptr);
        n->branches.push_back(std::move(last));
        break;
      }
    }
    return n;
  }
  NodeP For(std::unique_ptr<Parser> p) {
    auto n = std::make_unique<Node>();
    n->kind = Node::kFor;
    do n->vars.push_back(p->Name());
    while (p->EatOp(","));
    if (!p->EatName("in")) throw Error("expected 'in' in for");
    n->expr = p->Expression();  // a trailing `if` would parse as a conditional expression: split it off
    if (n->expr->kind == Expr::kCond && !n->expr->args[2]) {
      n->filter = std::move(n->expr->args[0]);
      n->expr = std::move(n->expr->args[1]);
    }
    p->ExpectEnd();
    std::string stop;
    n->branches.push_back(Body({"else", "endfor"}, &stop));
    if (stop == "else") n->branches.push_back(Body({"endfor"}, &stop));
    return n;
  }
  NodeP Set(std::unique_ptr<Parser> p) {
    auto n = std::make_unique<Node>();
    n->kind = Node::kSet;
    n->vars.push_back(p->Name());
    if (p->EatOp(".")) n->vars.push_back(p->Name());
    p->ExpectOp("=");
    n->expr = p->Expression();
    p->ExpectEnd();
    return n;
  }

  std::vector<Segment> s_;
  size_t i_ = 0;
  int depth_ = 0;
  std::unique_ptr<Parser> tag_;
};


}  // namespace

std::unique_ptr<Node> ParseTree(const std::string& source) { return TreeBuilder(Split(source)).Build(); }

}  // namespace subq::serve::jinja
