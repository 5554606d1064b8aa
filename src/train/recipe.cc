// Recipe YAML -> Recipe, with every key checked: unknown keys, wrong types and out-of-range values
// are errors that name the file and the dotted key.
#include "train/recipe.h"

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "io/token_shards.h"
#include "train/yaml_reader.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <algorithm>
#include <cmath>
#include <tuple>
#include <sstream>

namespace subq::train {
namespace {

namespace fs = std::filesystem;

void ReadStage(MapReader& parent, const char* name, StageRecipe* st, std::string* err) {
  MapReader m(parent.Sub(name), parent.Key(name), err);
  m.Get("tokens", &st->tokens);
  m.Get("lr", &st->lr);
  m.Get("batch_tokens", &st->batch_tokens);
  if (std::string(name) == "hidden_state") m.Get("train_mlp", &st->train_mlp);
  if (std::string(name) == "end_to_end") {
    m.Get("freeze_mlp", &st->freeze_mlp);
    m.Get("temperature", &st->temperature);
  }
  m.Finish();
}

Status Validate(const Recipe& r) {
  const std::string& f = r.path;
  if (r.teacher.empty()) return Errorf("{}: 'teacher' is required", f);
  if (!PathExists(r.teacher)) return Errorf("{}: teacher '{}' does not exist", f, r.teacher);
  if (!r.tokenizer.empty() && !PathExists(r.tokenizer))
    return Errorf("{}: tokenizer '{}' does not exist", f, r.tokenizer);
  if (r.seq_len < 8 || r.seq_len > 65536) return Errorf("{}: 'seq_len' must be in [8, 65536], got {}", f, r.seq_len);
  if (r.micro_batch < 1) return Errorf("{}: 'micro_batch' must be >= 1, got {}", f, r.micro_batch);
  if (r.checkpoint_every < 0) return Errorf("{}: 'checkpoint_every' must be >= 0 (0 = no checkpoints)", f);
  const auto& s = r.student;
  if (s.kind != "discrete_mamba2" && s.kind != "mamba2" && s.kind != "gated_deltanet" && s.kind != "mamba3" &&
      s.kind != "oryx")
    return Errorf("{}: 'student.kind' must be discrete_mamba2, mamba2, gated_deltanet, mamba3 or oryx, got '{}'", f,
                  s.kind);
  if (s.kind == "oryx") {  // dims are the teacher's attention
    if (s.oryx_recurrence != "ssd" && s.oryx_recurrence != "gdn")
      return Errorf("{}: 'student.oryx_recurrence' must be ssd or gdn, got '{}'", f, s.oryx_recurrence);
    if (!(s.oryx_attention_fraction >= 0.0 && s.oryx_attention_fraction <= 0.5))
      return Errorf("{}: 'student.oryx_attention_fraction' must be in [0, 0.5], got {}", f, s.oryx_attention_fraction);
    if (!s.attention_layers.empty()) return Errorf("{}: oryx students take no 'student.attention_layers'", f);
  }
  if (s.init != "attention" && s.init != "random")
    return Errorf("{}: 'student.init' must be attention or random, got '{}'", f, s.init);
  if (s.kind != "oryx" && (s.n_v_heads < 1 || s.head_dim < 1 || s.d_state < 1))
    return Errorf("{}: 'student.n_v_heads', 'student.head_dim' and 'student.d_state' must be >= 1", f);
  if (s.kind == "discrete_mamba2" && (s.n_qk_heads < 1 || s.n_v_heads % s.n_qk_heads != 0))
    return Errorf("{}: 'student.n_qk_heads' ({}) must be >= 1 and divide n_v_heads ({})", f, s.n_qk_heads,
                  s.n_v_heads);
  if (s.kind == "gated_deltanet") {  // head_dim = key head dim, d_state = value head dim
    if (s.n_qk_heads < 1 || s.n_v_heads % s.n_qk_heads != 0)
      return Errorf("{}: 'student.n_qk_heads' ({}) must be >= 1 and divide n_v_heads ({})", f, s.n_qk_heads,
                    s.n_v_heads);
    const float expand_v = static_cast<float>(static_cast<double>(s.d_state) / s.head_dim);
    if (static_cast<double>(expand_v) * s.head_dim != s.d_state)
      return Errorf("{}: gated_deltanet 'student.d_state' (value head dim {}) / head_dim ({}) must be exact in f32",
                    f, s.d_state, s.head_dim);
  }
  if (s.kind == "mamba3") {
    if (s.rope_fraction != 0.5 && s.rope_fraction != 1.0)
      return Errorf("{}: mamba3 'student.rope_fraction' must be 0.5 or 1.0, got {}", f, s.rope_fraction);
    if (s.rope_fraction == 0.5 && s.d_state % 4 != 0)  // d_state / 4 rotary angles
      return Errorf("{}: mamba3 'student.d_state' ({}) must be a multiple of 4 (rope_fraction 0.5)", f, s.d_state);
    if (s.rope_fraction == 1.0 && s.d_state % 2 != 0)  // d_state / 2 rotary angles
      return Errorf("{}: mamba3 'student.d_state' ({}) must be even (rope_fraction 1.0)", f, s.d_state);
    if (s.mimo_rank < 1 || s.mimo_rank > 64)
      return Errorf("{}: mamba3 'student.mimo_rank' must be in [1, 64] (1 = SISO), got {}", f, s.mimo_rank);
  } else if (s.mimo_rank != 1 || s.outproj_norm || s.rope_fraction != 0.5) {
    return Errorf("{}: 'student.mimo_rank', 'student.outproj_norm' and 'student.rope_fraction' are mamba3 options "
                  "(student.kind is '{}')", f, s.kind);
  }
  if ((s.kind == "mamba2" || s.kind == "mamba3") && (s.n_groups < 1 || s.n_v_heads % s.n_groups != 0))
    return Errorf("{}: 'student.n_groups' ({}) must divide n_v_heads ({})", f, s.n_groups, s.n_v_heads);
  if (s.conv_kernel < 1 || s.conv_kernel > 16) return Errorf("{}: 'student.conv_kernel' must be in [1, 16]", f);
  if (s.chunk_size < 1) return Errorf("{}: 'student.chunk_size' must be >= 1", f);
  for (int l : s.attention_layers)
    if (l < 0) return Errorf("{}: 'student.attention_layers' has a negative layer {}", f, l);
  const auto& d = r.data;
  if (d.files.empty() == d.shards.empty())
    return Errorf("{}: give either 'data.files' (text files) or 'data.shards' (a `subq data prepare` folder)", f);
  if (!d.shards.empty() && !IsShardFolder(d.shards))
    return Errorf("{}: 'data.shards' '{}' is not a folder written by `subq data prepare` (no index.json)", f, d.shards);
  for (const auto& p : d.files) {
    if (!IsRegularFile(p)) return Errorf("{}: corpus file '{}' does not exist", f, p);
    std::error_code ec;
    if (fs::file_size(p, ec) == 0 || ec) return Errorf("{}: corpus file '{}' is empty", f, p);
  }
  if (!(d.held_out_fraction > 0.0 && d.held_out_fraction < 0.5))
    return Errorf("{}: 'data.held_out_fraction' must be in (0, 0.5), got {}", f, d.held_out_fraction);
  if (d.eval_tokens < 1) return Errorf("{}: 'data.eval_tokens' must be >= 1", f);
  if (d.teacher_samples < 0) return Errorf("{}: 'data.teacher_samples' must be >= 0", f);
  if (!(d.sample_temperature > 0)) return Errorf("{}: 'data.sample_temperature' must be > 0", f);
  SUBQ_RETURN_IF_ERROR(ValidateOptim(r.optim, f));
  const auto& c = r.compute;
  if (c.dtype != "f32" && c.dtype != "bf16") return Errorf("{}: 'compute.dtype' must be f32 or bf16, got '{}'", f, c.dtype);
  if (c.stage1_head_chunk < 0) return Errorf("{}: 'compute.stage1_head_chunk' must be >= 0", f);
  if (c.bucket_mb < 1) return Errorf("{}: 'compute.bucket_mb' must be >= 1", f);
  int active = 0;
  for (int i = 0; i < 3; ++i) {
    const auto& st = r.stages[i];
    const std::string k = fmt::format("stages.{}", StageName(i));
    if (st.tokens < 0) return Errorf("{}: '{}.tokens' must be >= 0, got {}", f, k, st.tokens);
    if (st.tokens == 0) continue;
    ++active;
    if (!(st.lr > 0 && st.lr < 1)) return Errorf("{}: '{}.lr' must be in (0, 1), got {}", f, k, st.lr);
    if (st.batch_tokens <= 0 || st.batch_tokens % r.seq_len != 0)
      return Errorf("{}: '{}.batch_tokens' ({}) must be a positive multiple of seq_len ({})", f, k, st.batch_tokens,
                    r.seq_len);
    const int64_t seqs = st.batch_tokens / r.seq_len;
    if (seqs > r.micro_batch && seqs % r.micro_batch != 0)
      return Errorf("{}: '{}.batch_tokens' / seq_len = {} sequences is not a multiple of micro_batch ({})", f, k,
                    seqs, r.micro_batch);
    if (st.tokens < st.batch_tokens)
      return Errorf("{}: '{}.tokens' ({}) is smaller than one batch ({})", f, k, st.tokens, st.batch_tokens);
    if (!(st.temperature > 0)) return Errorf("{}: '{}.temperature' must be > 0", f, k);
  }
  if (active == 0) return Errorf("{}: every stage has tokens: 0, nothing to train", f);
  return Status::Ok();
}

// student.keep_heads: a `subq heads` ranking file -> its first keep_top_k (or keep_fraction of all)
// heads; an explicit list stays as given. Range checks against the teacher happen in Student::FromTeacher.
Status ResolveKeptHeads(Recipe* r) {
  auto& s = r->student;
  const std::string& f = r->path;
  if (s.keep_top_k < 0) return Errorf("{}: 'student.keep_top_k' must be >= 0", f);
  if (!(s.keep_fraction >= 0 && s.keep_fraction <= 1)) return Errorf("{}: 'student.keep_fraction' must be in [0, 1]", f);
  if (s.keep_heads_file.empty()) {
    if ((s.keep_top_k > 0 || s.keep_fraction > 0) && s.kept_heads.empty())
      return Errorf("{}: 'student.keep_top_k' / 'keep_fraction' need 'student.keep_heads: heads.json'", f);
    return Status::Ok();
  }
  if ((s.keep_top_k > 0) == (s.keep_fraction > 0))
    return Errorf("{}: 'student.keep_heads: {}' needs exactly one of 'keep_top_k' or 'keep_fraction'", f,
                  s.keep_heads_file);
  std::ifstream in(s.keep_heads_file);
  if (!in) return Errorf("{}: student.keep_heads '{}' cannot be opened", f, s.keep_heads_file);
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("heads") || !j["heads"].is_array())
    return Errorf("{}: '{}' is not a `subq heads` ranking (a JSON object with a \"heads\" list)", f,
                  s.keep_heads_file);
  std::vector<std::tuple<int, int, int>> ranked;  // (rank, layer, head)
  for (const auto& h : j["heads"]) {
    if (!h.is_object() || !h.contains("layer") || !h.contains("head") || !h.contains("rank") ||
        !h["layer"].is_number_integer() || !h["head"].is_number_integer() || !h["rank"].is_number_integer())
      return Errorf("{}: '{}': every heads entry needs integer layer, head and rank", f, s.keep_heads_file);
    ranked.emplace_back(h["rank"].get<int>(), h["layer"].get<int>(), h["head"].get<int>());
  }
  std::sort(ranked.begin(), ranked.end());
  const size_t k = s.keep_top_k > 0 ? static_cast<size_t>(s.keep_top_k)
                                     : static_cast<size_t>(std::lround(s.keep_fraction * ranked.size()));
  if (k < 1 || k > ranked.size())
    return Errorf("{}: keeping {} heads of the {} ranked in '{}'", f, k, ranked.size(), s.keep_heads_file);
  s.kept_heads.clear();
  for (size_t i = 0; i < k; ++i) s.kept_heads.emplace_back(std::get<1>(ranked[i]), std::get<2>(ranked[i]));
  return Status::Ok();
}

}  // namespace

Result<Recipe> ParseRecipe(const std::string& yaml, const std::string& origin, const std::string& base_dir,
                           const std::vector<std::string>& overrides) {
  SUBQ_ASSIGN_OR_RETURN(YAML::Node root, LoadRecipeYaml(yaml, origin, overrides));
  Recipe r;
  r.path = origin;
  std::string err;
  MapReader top(root, "", &err);
  top.Get("teacher", &r.teacher);
  top.Get("tokenizer", &r.tokenizer);
  top.Get("seed", &r.seed);
  top.Get("seq_len", &r.seq_len);
  top.Get("micro_batch", &r.micro_batch);
  top.Get("checkpoint_every", &r.checkpoint_every);
  top.Get("probe_prompt", &r.probe_prompt);
  {
    MapReader m(top.Sub("student"), "student", &err);
    auto& s = r.student;
    m.Get("kind", &s.kind);
    m.Get("n_qk_heads", &s.n_qk_heads);
    m.Get("n_v_heads", &s.n_v_heads);
    m.Get("head_dim", &s.head_dim);
    m.Get("d_state", &s.d_state);
    m.Get("n_groups", &s.n_groups);
    m.Get("conv_kernel", &s.conv_kernel);
    m.Get("chunk_size", &s.chunk_size);
    m.Get("init", &s.init);
    m.Get("attention_layers", &s.attention_layers);
    m.Get("oryx_recurrence", &s.oryx_recurrence);
    m.Get("oryx_attention_fraction", &s.oryx_attention_fraction);
    if (const YAML::Node kh = m.Sub("keep_heads"); kh && !kh.IsNull()) {
      if (kh.IsScalar()) {
        s.keep_heads_file = kh.as<std::string>();
      } else if (kh.IsSequence()) {
        for (const auto& e : kh) {
          if (!e.IsSequence() || e.size() != 2) {
            m.Fail("'student.keep_heads' must be a heads.json path or a list of [layer, head] pairs");
            break;
          }
          try {
            s.kept_heads.emplace_back(e[0].as<int>(), e[1].as<int>());
          } catch (const YAML::Exception&) {
            m.Fail(fmt::format("'student.keep_heads' has a bad pair {}", YAML::Dump(e)));
          }
        }
      } else {
        m.Fail("'student.keep_heads' must be a heads.json path or a list of [layer, head] pairs");
      }
    }
    m.Get("keep_top_k", &s.keep_top_k);
    m.Get("keep_fraction", &s.keep_fraction);
    m.Get("mimo_rank", &s.mimo_rank);
    m.Get("outproj_norm", &s.outproj_norm);
    m.Get("rope_fraction", &s.rope_fraction);
    m.Finish();
    if (s.n_qk_heads == 0) s.n_qk_heads = s.n_v_heads;
  }
  {
    MapReader m(top.Sub("data"), "data", &err);
    auto& d = r.data;
    m.Get("files", &d.files);
    m.Get("shards", &d.shards);
    m.Get("separator", &d.separator);
    m.Get("held_out_fraction", &d.held_out_fraction);
    m.Get("eval_tokens", &d.eval_tokens);
    m.Get("teacher_samples", &d.teacher_samples);
    m.Get("sample_temperature", &d.sample_temperature);
    m.Finish();
  }
  ReadOptimSection(top, &err, &r.optim);
  {
    MapReader m(top.Sub("compute"), "compute", &err);
    auto& c = r.compute;
    m.Get("dtype", &c.dtype);
    m.Get("tf32", &c.tf32);
    m.Get("activation_checkpointing", &c.activation_checkpointing);
    m.Get("stage1_head_chunk", &c.stage1_head_chunk);
    m.Get("bucket_mb", &c.bucket_mb);
    m.Finish();
  }
  {
    MapReader m(top.Sub("stages"), "stages", &err);
    for (int i = 0; i < 3; ++i) ReadStage(m, StageName(i), &r.stages[i], &err);
    m.Finish();
  }
  top.Finish();
  if (!err.empty()) return Errorf("{}: {}", origin, err);
  r.teacher = ExpandPath(r.teacher, base_dir);
  r.tokenizer = ExpandPath(r.tokenizer, base_dir);
  for (auto& p : r.data.files) p = ExpandPath(p, base_dir);
  r.data.shards = ExpandPath(r.data.shards, base_dir);
  r.student.keep_heads_file = ExpandPath(r.student.keep_heads_file, base_dir);
  SUBQ_RETURN_IF_ERROR(ResolveKeptHeads(&r));
  SUBQ_RETURN_IF_ERROR(Validate(r));
  return r;
}

Result<Recipe> LoadRecipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) return Errorf("cannot open recipe '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string dir = fs::absolute(fs::path(path)).parent_path().string();
  return ParseRecipe(ss.str(), path, dir, overrides);
}

}  // namespace subq::train
