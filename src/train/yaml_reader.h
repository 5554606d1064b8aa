// Reading recipe YAML with every key checked (shared by the distill recipe, train/recipe.h, and the
// LM training recipe, train/train_lm.h): a map reader that reports unknown keys and bad values by
// dotted key, ${SUBQ_DATA} path expansion, and "dotted.key=value" overrides. Header-only so the recipe
// fuzzer builds without extra sources. No torch here.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "train/recipe.h"
#include "util/status.h"

namespace subq::train {

// Reads the keys of one YAML map, remembering which were consumed so leftovers can be reported.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string where, std::string* err) : node_(node), where_(std::move(where)), err_(err) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) Fail(fmt::format("'{}' must be a map", where_));
  }
  std::string Key(const char* k) const { return where_.empty() ? k : where_ + "." + k; }

  template <typename T>
  void Get(const char* key, T* out) {
    seen_.insert(key);
    if (!ok() || !node_ || !node_.IsMap() || !node_[key]) return;
    const YAML::Node v = node_[key];
    try {
      if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        out->clear();
        if (v.IsScalar()) out->push_back(v.as<std::string>());
        else for (const auto& e : v) out->push_back(e.as<std::string>());
      } else if constexpr (std::is_same_v<T, std::vector<int>>) {
        out->clear();
        for (const auto& e : v) out->push_back(e.as<int>());
      } else {
        if (!v.IsScalar()) throw YAML::Exception(YAML::Mark::null_mark(), "not a scalar");
        *out = v.as<T>();
      }
    } catch (const YAML::Exception&) {
      Fail(fmt::format("'{}' has a bad value '{}'", Key(key), YAML::Dump(v)));
    }
  }
  YAML::Node Sub(const char* key) {
    seen_.insert(key);
    return node_ && node_.IsMap() ? node_[key] : YAML::Node();
  }
  void Finish() {
    if (!ok() || !node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      // A key may be any YAML node ("? [a, b]" makes a list key): only scalars name recipe fields.
      if (!kv.first.IsScalar()) return Fail(fmt::format("'{}' has a key that is not a name: {}", where_.empty() ? "recipe" : where_,
                                                        YAML::Dump(kv.first)));
      const std::string k = kv.first.as<std::string>();
      if (!seen_.count(k)) return Fail(fmt::format("unknown key '{}'", Key(k.c_str())));
    }
  }
  void Fail(const std::string& m) {
    if (err_->empty()) *err_ = m;
  }
  bool ok() const { return err_->empty(); }

 private:
  YAML::Node node_;
  std::string where_;
  std::string* err_;
  std::set<std::string> seen_;
};

// ${SUBQ_DATA} is the env var, else <base_dir>/../../shared/data; any other ${NAME} must be set in the
// environment (e.g. ${SUBQ_PROBES}, the folder of generated probe JSONL). Relative paths are relative to base_dir.
inline std::string ExpandPath(std::string p, const std::string& base_dir) {
  for (size_t pos; (pos = p.find("${")) != std::string::npos;) {
    const size_t end = p.find('}', pos);
    if (end == std::string::npos) break;
    const std::string name = p.substr(pos + 2, end - pos - 2);
    const char* env = std::getenv(name.c_str());
    std::string value = env ? env : "";
    if (!env && name == "SUBQ_DATA") value = (std::filesystem::path(base_dir) / ".." / ".." / "shared" / "data").string();
    if (!env && name != "SUBQ_DATA") value = "<" + name + " is not set>";
    p.replace(pos, end - pos + 1, value);
  }
  if (p.empty()) return p;
  std::filesystem::path fp(p);
  if (fp.is_relative()) fp = std::filesystem::path(base_dir) / fp;
  return fp.lexically_normal().string();
}

// Sets node[a][b][c] = value for a dotted key (creating maps on the way).
inline Status ApplyOverride(YAML::Node root, const std::string& kv) {
  const auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) return Errorf("override '{}' is not key=value", kv);
  const std::string key = kv.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(kv.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return Errorf("override '{}': bad YAML value ({})", kv, e.what());
  }
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = chain.back()[parts[i]];
    if (!next.IsDefined() || next.IsNull()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[parts[i]];
    }
    chain.push_back(next);
  }
  chain.back()[parts.back()] = value;
  return Status::Ok();
}

// Path checks of recipe validation that never throw (a recipe's text can name any path, e.g. one longer
// than the file system allows): false where std::filesystem would throw.
inline bool PathExists(const std::string& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}
inline bool IsRegularFile(const std::string& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

// Parses a recipe's YAML text (a map) and applies the --set overrides: the start of every recipe reader.
inline Result<YAML::Node> LoadRecipeYaml(const std::string& yaml, const std::string& origin,
                                         const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return Errorf("{}: not valid YAML: {}", origin, e.what());
  }
  if (!root.IsMap()) return Errorf("{}: a recipe must be a YAML map", origin);
  for (const auto& o : overrides) {
    Status st = ApplyOverride(root, o);
    if (!st.ok()) return Errorf("{}: {}", origin, st.message());
  }
  return root;
}

// The `optim` section (AdamW + warmup-stable-decay), shared by distill and train recipes.
inline void ReadOptimSection(MapReader& top, std::string* err, OptimRecipe* o) {
  MapReader m(top.Sub("optim"), "optim", err);
  m.Get("beta1", &o->beta1);
  m.Get("beta2", &o->beta2);
  m.Get("weight_decay", &o->weight_decay);
  m.Get("eps", &o->eps);
  m.Get("grad_clip", &o->grad_clip);
  m.Get("warmup_fraction", &o->warmup_fraction);
  m.Get("decay_fraction", &o->decay_fraction);
  m.Get("min_lr", &o->min_lr);
  m.Finish();
}

inline Status ValidateOptim(const OptimRecipe& o, const std::string& f) {
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1))
    return Errorf("{}: 'optim.beta1/beta2' must be in [0, 1)", f);
  if (o.weight_decay < 0 || o.grad_clip < 0 || !(o.eps > 0)) return Errorf("{}: bad 'optim' values", f);
  if (o.warmup_fraction < 0 || o.decay_fraction < 0 || o.warmup_fraction + o.decay_fraction > 1)
    return Errorf("{}: 'optim.warmup_fraction' + 'optim.decay_fraction' must be in [0, 1]", f);
  return Status::Ok();
}

}  // namespace subq::train
