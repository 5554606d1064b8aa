// Rendering of the Jinja subset (see serve/jinja.h for what it covers).
#include "serve/jinja.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "serve/jinja_ast.h"

namespace subq::serve::jinja {
namespace {

bool Truthy(const json& v) {
  if (v.is_discarded() || v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0.0;
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  return false;
}

std::string Str(const json& v) {
  if (v.is_discarded()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_null()) return "None";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) {
    std::string s = fmt::format("{}", v.get<double>());
    if (s.find_first_of(".en") == std::string::npos) s += ".0";
    return s;
  }
  return v.dump();
}


class Renderer {
 public:
  explicit Renderer(const json& ctx) { scopes_.push_back(ctx.is_object() ? ctx : json::object()); }
  void Run(const Node& n) {
    switch (n.kind) {
      case Node::kSeq:
        for (const auto& k : n.kids) Run(*k);
        break;
      case Node::kText: out_ += n.text; break;
      case Node::kOut: out_ += Str(Eval(*n.expr)); break;
      case Node::kIf:
        for (size_t b = 0; b < n.branches.size(); ++b)
          if (!n.conds[b] || Truthy(Eval(*n.conds[b]))) {
            Run(*n.branches[b]);
            break;
          }
        break;
      case Node::kFor: For(n); break;
      case Node::kSet: {
        json v = Eval(*n.expr);
        if (n.vars.size() == 1) {
          scopes_.back()[n.vars[0]] = v;
        } else {
          json* ns = Find(n.vars[0]);
          if (!ns || !ns->is_object()) throw Error("cannot set an attribute of '" + n.vars[0] + "'");
          (*ns)[n.vars[1]] = v;
        }
        break;
      }
    }
  }
  std::string& out() { return out_; }

 private:
  json* Find(const std::string& name) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
      if (auto f = it->find(name); f != it->end()) return &*f;
    return nullptr;
  }
  void For(const Node& n) {
    json seq = Eval(*n.expr);
    json items = json::array();
    if (seq.is_object()) {
      for (auto it = seq.begin(); it != seq.end(); ++it) items.push_back(it.key());
    } else if (seq.is_string()) {
      for (char c : seq.get<std::string>()) items.push_back(std::string(1, c));
    } else if (seq.is_array()) {
      items = seq;
    } else if (!IsUndef(seq) && !seq.is_null()) {
      throw Error("cannot iterate over " + Str(seq));
    }
    scopes_.push_back(json::object());
    auto bind = [&](const json& item) {
      if (n.vars.size() == 1) {
        scopes_.back()[n.vars[0]] = item;
      } else {
        if (!item.is_array() || item.size() != n.vars.size()) throw Error("cannot unpack a loop item");
        for (size_t v = 0; v < n.vars.size(); ++v) scopes_.back()[n.vars[v]] = item[v];
      }
    };
    if (n.filter) {
      json kept = json::array();
      for (const auto& it : items) {
        bind(it);
        if (Truthy(Eval(*n.filter))) kept.push_back(it);
      }
      items = std::move(kept);
    }
    const size_t len = items.size();
    for (size_t i = 0; i < len; ++i) {
      if (++iterations_ > kMaxIterations || out_.size() > kMaxOutput) throw Error("template output too large");
      bind(items[i]);
      scopes_.back()["loop"] = {{"index", i + 1}, {"index0", i}, {"revindex", len - i}, {"revindex0", len - i - 1},
                                {"first", i == 0}, {"last", i + 1 == len}, {"length", len},
                                {"previtem", i > 0 ? items[i - 1] : Undefined()},
                                {"nextitem", i + 1 < len ? items[i + 1] : Undefined()}};
      Run(*n.branches[0]);
    }
    scopes_.pop_back();
    if (len == 0 && n.branches.size() > 1) Run(*n.branches[1]);
  }

  json Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::kLit: return e.lit;
      case Expr::kVar: {
        json* v = Find(e.name);
        return v ? *v : Undefined();
      }
      case Expr::kAttr: return Member(Eval(*e.args[0]), json(e.name));
      case Expr::kIndex: return Member(Eval(*e.args[0]), Eval(*e.args[1]));
      case Expr::kSlice: return Slice(e);
      case Expr::kNot: return !Truthy(Eval(*e.args[0]));
      case Expr::kNeg: {
        json v = Eval(*e.args[0]);
        if (v.is_number_integer()) return -v.get<int64_t>();
        if (v.is_number()) return -v.get<double>();
        throw Error("cannot negate " + Str(v));
      }
      case Expr::kCond:
        if (Truthy(Eval(*e.args[0]))) return Eval(*e.args[1]);
        return e.args[2] ? Eval(*e.args[2]) : Undefined();
      case Expr::kList: {
        json l = json::array();
        for (const auto& a : e.args) l.push_back(Eval(*a));
        return l;
      }
      case Expr::kDict: {
        json d = json::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) d[Str(Eval(*e.args[i]))] = Eval(*e.args[i + 1]);
        return d;
      }
      case Expr::kBin: return Binary(e);
      case Expr::kTest: return Test(e) != e.negate;
      case Expr::kCall: return Call(e);
      case Expr::kFilter: return Filter(e);
    }
    return Undefined();
  }

  static json Member(const json& obj, const json& key) {
    if (obj.is_object() && key.is_string()) {
      auto it = obj.find(key.get<std::string>());
      return it == obj.end() ? Undefined() : *it;
    }
    if ((obj.is_array() || obj.is_string()) && key.is_number_integer()) {
      const int64_t n = obj.is_array() ? obj.size() : obj.get_ref<const std::string&>().size();
      int64_t i = key.get<int64_t>();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Undefined();
      return obj.is_array() ? obj[i] : json(std::string(1, obj.get_ref<const std::string&>()[i]));
    }
    return Undefined();
  }

  json Slice(const Expr& e) {
    json v = Eval(*e.args[0]);
    const bool str = v.is_string();
    if (!str && !v.is_array()) throw Error("cannot slice " + Str(v));
    const int64_t n = str ? v.get_ref<const std::string&>().size() : v.size();
    auto get = [&](const ExprP& x, int64_t dflt) {
      if (!x) return dflt;
      json j = Eval(*x);
      if (!j.is_number_integer()) throw Error("slice bounds must be integers");
      return j.get<int64_t>();
    };
    const int64_t step = get(e.args[3], 1);
    if (step == 0) throw Error("slice step cannot be zero");
    auto clamp = [&](int64_t i, int64_t lo, int64_t hi) {
      if (i < 0) i += n;
      return std::min(std::max(i, lo), hi);
    };
    int64_t a = e.args[1] ? clamp(get(e.args[1], 0), step > 0 ? 0 : -1, step > 0 ? n : n - 1) : (step > 0 ? 0 : n - 1);
    int64_t b = e.args[2] ? clamp(get(e.args[2], 0), step > 0 ? 0 : -1, step > 0 ? n : n - 1) : (step > 0 ? n : -1);
    json out = str ? json("") : json::array();
    for (int64_t i = a; step > 0 ? i < b : i > b; i += step) {
      if (str) out.get_ref<std::string&>() += v.get_ref<const std::string&>()[i];
      else out.push_back(v[i]);
    }
    return out;
  }

  json Binary(const Expr& e) {
    const std::string& op = e.name;
    json a = Eval(*e.args[0]);
    if (op == "and") return Truthy(a) ? Eval(*e.args[1]) : a;
    if (op == "or") return Truthy(a) ? a : Eval(*e.args[1]);
    json b = Eval(*e.args[1]);
    if (op == "~") return Str(a) + Str(b);
    if (op == "==") return a == b;
    if (op == "!=") return a != b;
    if (op == "in") {
      if (b.is_string()) return b.get<std::string>().find(Str(a)) != std::string::npos;
      if (b.is_array()) return std::find(b.begin(), b.end(), a) != b.end();
      if (b.is_object()) return a.is_string() && b.contains(a.get<std::string>());
      return false;
    }
    if (op == "+" && a.is_string() && b.is_string()) return a.get<std::string>() + b.get<std::string>();
    if (op == "+" && a.is_array() && b.is_array()) {
      json r = a;
      r.insert(r.end(), b.begin(), b.end());
      return r;
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      bool lt, gt;
      if (a.is_number() && b.is_number()) lt = a.get<double>() < b.get<double>(), gt = a.get<double>() > b.get<double>();
      else if (a.is_string() && b.is_string()) lt = a < b, gt = b < a;
      else throw Error("cannot compare " + Str(a) + " and " + Str(b));
      return op == "<" ? lt : op == ">" ? gt : op == "<=" ? !gt : !lt;
    }
    if (!a.is_number() || !b.is_number()) throw Error("cannot apply '" + op + "' to " + Str(a) + " and " + Str(b));
    const bool ints = a.is_number_integer() && b.is_number_integer();
    const double x = a.get<double>(), y = b.get<double>();
    if ((op == "/" || op == "//" || op == "%") && y == 0) throw Error("division by zero");
    if (op == "+") return ints ? json(a.get<int64_t>() + b.get<int64_t>()) : json(x + y);
    if (op == "-") return ints ? json(a.get<int64_t>() - b.get<int64_t>()) : json(x - y);
    if (op == "*") return ints ? json(a.get<int64_t>() * b.get<int64_t>()) : json(x * y);
    if (op == "/") return x / y;
    if (op == "//") return ints ? json(static_cast<int64_t>(std::floor(x / y))) : json(std::floor(x / y));
    if (op == "%") return ints ? json(((a.get<int64_t>() % b.get<int64_t>()) + b.get<int64_t>()) % b.get<int64_t>())
                               : json(std::fmod(x, y));
    throw Error("unknown operator " + op);
  }

  bool Test(const Expr& e) {
    json v = Eval(*e.args[0]);
    const std::string& t = e.name;
    if (t == "defined") return !IsUndef(v);
    if (t == "undefined") return IsUndef(v);
    if (t == "none") return v.is_null();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer();
    if (t == "float") return v.is_number_float();
    if (t == "boolean") return v.is_boolean();
    if (t == "mapping") return v.is_object();
    if (t == "iterable") return v.is_array() || v.is_object() || v.is_string();
    if (t == "sequence") return v.is_array() || v.is_string();
    if (t == "true") return v.is_boolean() && v.get<bool>();
    if (t == "false") return v.is_boolean() && !v.get<bool>();
    throw Error("unknown test '" + t + "'");
  }

  json Call(const Expr& e) {
    std::vector<json> args;
    json kwargs = json::object();
    for (size_t i = 1; i < e.args.size(); ++i) {
      if (e.kw[i].empty()) args.push_back(Eval(*e.args[i]));
      else kwargs[e.kw[i]] = Eval(*e.args[i]);
    }
    const Expr& f = *e.args[0];
    if (f.kind == Expr::kVar && f.name == "raise_exception")
      throw Error("template raised: " + (args.empty() ? std::string() : Str(args[0])));
    if (f.kind == Expr::kVar && f.name == "namespace") return kwargs;
    if (f.kind == Expr::kVar && f.name == "range" && !args.empty() && args[0].is_number_integer()) {
      json r = json::array();
      for (int64_t i = 0; i < std::min<int64_t>(args[0].get<int64_t>(), 1 << 16); ++i) r.push_back(i);
      return r;
    }
    if (f.kind != Expr::kAttr) throw Error("unknown function");
    return Method(Eval(*f.args[0]), f.name, args);
  }

  static std::string StripChars(std::string s, bool left, bool right) {
    const char* ws = " \t\r\n";
    if (right) s.erase(s.find_last_not_of(ws) + 1);
    if (left) s.erase(0, std::min(s.size(), s.find_first_not_of(ws)));
    return s;
  }

  static json Method(const json& self, const std::string& m, const std::vector<json>& args) {
    auto arg_str = [&](size_t i) { return i < args.size() ? Str(args[i]) : std::string(); };
    if (self.is_string()) {
      const std::string& s = self.get_ref<const std::string&>();
      if (m == "strip") return StripChars(s, true, true);
      if (m == "lstrip") return StripChars(s, true, false);
      if (m == "rstrip") return StripChars(s, false, true);
      if (m == "upper" || m == "lower") {
        std::string r = s;
        for (char& c : r) c = m == "upper" ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c));
        return r;
      }
      if (m == "startswith") return s.rfind(arg_str(0), 0) == 0;
      if (m == "endswith") {
        const std::string x = arg_str(0);
        return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
      }
      if (m == "split") {
        const std::string sep = args.empty() ? " " : arg_str(0);
        if (sep.empty()) throw Error("empty separator");
        json r = json::array();
        size_t a = 0, b;
        while ((b = s.find(sep, a)) != std::string::npos) r.push_back(s.substr(a, b - a)), a = b + sep.size();
        r.push_back(s.substr(a));
        return r;
      }
    }
    if (self.is_object()) {
      if (m == "items" || m == "keys" || m == "values") {
        json r = json::array();
        for (auto it = self.begin(); it != self.end(); ++it)
          r.push_back(m == "items" ? json::array({it.key(), it.value()}) : m == "keys" ? json(it.key()) : it.value());
        return r;
      }
      if (m == "get") {
        auto it = self.find(arg_str(0));
        return it != self.end() ? *it : args.size() > 1 ? args[1] : json(nullptr);
      }
    }
    throw Error("unknown method '" + m + "'");
  }

  json Filter(const Expr& e) {
    json v = Eval(*e.args[0]);
    std::vector<json> args;
    for (size_t i = 1; i < e.args.size(); ++i) args.push_back(Eval(*e.args[i]));
    const std::string& f = e.name;
    if (f == "trim") return StripChars(Str(v), true, true);
    if (f == "length" || f == "count") return v.is_string() ? v.get_ref<const std::string&>().size() : IsUndef(v) ? 0 : v.size();
    if (f == "upper" || f == "lower") return Method(json(Str(v)), f, {});
    if (f == "string") return Str(v);
    if (f == "safe") return v;
    if (f == "tojson") return IsUndef(v) ? "null" : v.dump();
    if (f == "int") return v.is_number() ? json(static_cast<int64_t>(v.get<double>())) : json(std::atoll(Str(v).c_str()));
    if (f == "default" || f == "d")
      return (IsUndef(v) || (args.size() > 1 && Truthy(args[1]) && !Truthy(v))) ? (args.empty() ? json("") : args[0]) : v;
    if (f == "first" || f == "last") {
      if (!v.is_array() || v.empty()) return Undefined();
      return f == "first" ? v.front() : v.back();
    }
    if (f == "join") {
      std::string r;
      const std::string sep = args.empty() ? "" : Str(args[0]);
      for (size_t i = 0; v.is_array() && i < v.size(); ++i) r += (i ? sep : "") + Str(v[i]);
      return r;
    }
    if (f == "capitalize") {
      std::string s = Method(json(Str(v)), "lower", {}).get<std::string>();
      if (!s.empty()) s[0] = std::toupper(static_cast<unsigned char>(s[0]));
      return s;
    }
    if (f == "list") return v.is_array() ? v : json::array();
    throw Error("unknown filter '" + f + "'");
  }

  static constexpr size_t kMaxIterations = 1 << 16, kMaxOutput = 4 << 20;  // a runaway template is an error
  std::vector<json> scopes_;
  std::string out_;
  size_t iterations_ = 0;
};


}  // namespace

Result<Template> Template::Parse(const std::string& source) {
  try {
    Template t;
    t.root_ = ParseTree(source);
    return t;
  } catch (const std::exception& e) {
    return Errorf("chat template: {}", e.what());
  }
}

Result<std::string> Template::Render(const nlohmann::json& context) const {
  try {
    Renderer r(context);
    r.Run(*root_);
    return std::move(r.out());
  } catch (const std::exception& e) {
    return Errorf("{}", e.what());
  }
}

}  // namespace subq::serve::jinja