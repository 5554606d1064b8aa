// LM training recipe YAML -> LmRecipe (train_lm.h), every key checked (train/yaml_reader.h).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "train/train_lm.h"
#include "train/yaml_reader.h"

namespace subq::train {
namespace {

namespace fs = std::filesystem;

Status ValidateLm(const LmRecipe& r) {
  const std::string& f = r.path;
  const auto& m = r.model;
  if (m.from.empty() && m.tokenizer.empty())
    return Errorf("{}: training from scratch needs 'model.tokenizer' (or 'model.from' to fine-tune)", f);
  if (!m.from.empty() && !PathExists(m.from)) return Errorf("{}: model.from '{}' does not exist", f, m.from);
  if (!m.tokenizer.empty() && !PathExists(m.tokenizer))
    return Errorf("{}: model.tokenizer '{}' does not exist", f, m.tokenizer);
  if (m.from.empty()) {
    if (m.dim < 8 || m.dim > 65536) return Errorf("{}: 'model.dim' must be in [8, 65536], got {}", f, m.dim);
    if (m.n_layers < 1 || m.n_layers > 1024) return Errorf("{}: 'model.n_layers' must be in [1, 1024]", f);
    if (m.n_heads < 1 || m.dim % m.n_heads != 0 || (m.dim / m.n_heads) % 2 != 0)
      return Errorf("{}: 'model.n_heads' {} must divide dim {} into an even head dim", f, m.n_heads, m.dim);
    if (m.n_kv_heads < 1 || m.n_heads % m.n_kv_heads != 0)
      return Errorf("{}: 'model.n_kv_heads' {} must divide n_heads {}", f, m.n_kv_heads, m.n_heads);
    if (m.hidden_dim < 1) return Errorf("{}: 'model.hidden_dim' must be >= 1", f);
    if (m.max_seq_len < r.seq_len)
      return Errorf("{}: 'model.max_seq_len' {} is below seq_len {}", f, m.max_seq_len, r.seq_len);
    if (!(m.init_std > 0)) return Errorf("{}: 'model.init_std' must be > 0", f);
  }
  if (r.seq_len < 8 || r.seq_len > 65536) return Errorf("{}: 'seq_len' must be in [8, 65536], got {}", f, r.seq_len);
  if (r.micro_batch < 1) return Errorf("{}: 'micro_batch' must be >= 1, got {}", f, r.micro_batch);
  if (r.checkpoint_every < 0) return Errorf("{}: 'checkpoint_every' must be >= 0 (0 = no checkpoints)", f);
  if (r.sources.empty()) return Errorf("{}: 'data.sources' needs at least one text or probe source", f);
  bool any_text = false;
  for (size_t i = 0; i < r.sources.size(); ++i) {
    const auto& s = r.sources[i];
    if (s.text.empty() == s.probe.empty())
      return Errorf("{}: data.sources[{}] needs exactly one of 'text' or 'probe'", f, i);
    const std::string& p = s.text.empty() ? s.probe : s.text;
    if (!PathExists(p)) return Errorf("{}: data.sources[{}]: '{}' does not exist", f, i, p);
    if (!(s.weight > 0) || !std::isfinite(s.weight))
      return Errorf("{}: data.sources[{}].weight must be > 0, got {}", f, i, s.weight);
    if (s.loss != "all" && s.loss != "answers")
      return Errorf("{}: data.sources[{}].loss must be 'all' or 'answers', got '{}'", f, i, s.loss);
    if (s.loss == "answers" && s.probe.empty())
      return Errorf("{}: data.sources[{}].loss 'answers' needs a probe source (text has no answer spans)", f, i);
    any_text |= !s.text.empty();
  }
  if (!any_text) return Errorf("{}: data.sources needs at least one text source (held-out perplexity)", f);
  if (!(r.held_out_fraction > 0 && r.held_out_fraction < 1))
    return Errorf("{}: 'data.held_out_fraction' must be in (0, 1)", f);
  if (r.eval_tokens < 1) return Errorf("{}: 'data.eval_tokens' must be >= 1", f);
  const auto& t = r.train;
  if (t.tokens < 1) return Errorf("{}: 'train.tokens' must be >= 1", f);
  if (!(t.lr > 0)) return Errorf("{}: 'train.lr' must be > 0", f);
  if (t.batch_tokens < r.seq_len || t.batch_tokens % r.seq_len != 0)
    return Errorf("{}: 'train.batch_tokens' {} must be a positive multiple of seq_len {}", f, t.batch_tokens,
                  r.seq_len);
  if ((t.batch_tokens / r.seq_len) % std::min<int64_t>(t.batch_tokens / r.seq_len, r.micro_batch) != 0)
    return Errorf("{}: sequences per step ({}) must be a multiple of micro_batch {}", f, t.batch_tokens / r.seq_len,
                  r.micro_batch);
  if (t.tokens < t.batch_tokens) return Errorf("{}: 'train.tokens' is below one batch ({})", f, t.batch_tokens);
  SUBQ_RETURN_IF_ERROR(ValidateOptim(r.optim, f));
  return Status::Ok();
}

}  // namespace

Result<LmRecipe> ParseLmRecipe(const std::string& yaml, const std::string& origin, const std::string& base_dir,
                               const std::vector<std::string>& overrides) {
  SUBQ_ASSIGN_OR_RETURN(YAML::Node root, LoadRecipeYaml(yaml, origin, overrides));
  LmRecipe r;
  r.path = origin;
  std::string err;
  MapReader top(root, "", &err);
  top.Get("seed", &r.seed);
  top.Get("seq_len", &r.seq_len);
  top.Get("micro_batch", &r.micro_batch);
  top.Get("checkpoint_every", &r.checkpoint_every);
  {
    MapReader m(top.Sub("model"), "model", &err);
    auto& x = r.model;
    m.Get("from", &x.from);
    m.Get("tokenizer", &x.tokenizer);
    m.Get("dim", &x.dim);
    m.Get("hidden_dim", &x.hidden_dim);
    m.Get("n_layers", &x.n_layers);
    m.Get("n_heads", &x.n_heads);
    m.Get("n_kv_heads", &x.n_kv_heads);
    m.Get("rope_theta", &x.rope_theta);
    m.Get("norm_eps", &x.norm_eps);
    m.Get("init_std", &x.init_std);
    m.Get("max_seq_len", &x.max_seq_len);
    m.Get("tie_embeddings", &x.tie_embeddings);
    m.Finish();
    if (x.n_kv_heads == 0) x.n_kv_heads = x.n_heads;
    if (x.hidden_dim == 0) x.hidden_dim = (8 * x.dim / 3 + 7) / 8 * 8;
  }
  {
    MapReader m(top.Sub("data"), "data", &err);
    const YAML::Node srcs = m.Sub("sources");
    if (srcs && !srcs.IsSequence()) m.Fail("'data.sources' must be a list");
    if (srcs && srcs.IsSequence())
      for (size_t i = 0; i < srcs.size(); ++i) {
        LmSource s;
        MapReader sm(srcs[i], fmt::format("data.sources[{}]", i), &err);
        sm.Get("text", &s.text);
        sm.Get("probe", &s.probe);
        sm.Get("separator", &s.separator);
        sm.Get("weight", &s.weight);
        sm.Get("loss", &s.loss);
        sm.Finish();
        s.text = ExpandPath(s.text, base_dir);
        s.probe = ExpandPath(s.probe, base_dir);
        r.sources.push_back(s);
      }
    m.Get("held_out_fraction", &r.held_out_fraction);
    m.Get("eval_tokens", &r.eval_tokens);
    m.Finish();
  }
  {
    MapReader m(top.Sub("train"), "train", &err);
    m.Get("tokens", &r.train.tokens);
    m.Get("lr", &r.train.lr);
    m.Get("batch_tokens", &r.train.batch_tokens);
    m.Finish();
  }
  ReadOptimSection(top, &err, &r.optim);
  top.Finish();
  if (!err.empty()) return Errorf("{}: {}", origin, err);
  r.model.from = ExpandPath(r.model.from, base_dir);
  r.model.tokenizer = ExpandPath(r.model.tokenizer, base_dir);
  SUBQ_RETURN_IF_ERROR(ValidateLm(r));
  YAML::Emitter em;
  em << root;
  r.yaml = em.c_str();
  return r;
}

Result<LmRecipe> LoadLmRecipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) return Errorf("cannot open recipe '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string dir = fs::absolute(fs::path(path)).parent_path().string();
  return ParseLmRecipe(ss.str(), path, dir, overrides);
}

}  // namespace subq::train
