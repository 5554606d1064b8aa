#include "train/run_fingerprint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "io/checkpoint_manifest.h"

namespace subq::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

// Size and CRC-32 of one file, read in blocks.
Result<json> FileIdentity(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return Errorf("{}: cannot open to fingerprint the run", p.string());
  std::vector<char> buf(1 << 20);
  uint32_t crc = 0;
  uint64_t bytes = 0;
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const size_t n = static_cast<size_t>(f.gcount());
    if (n == 0) break;
    crc = Crc32Continue(crc, buf.data(), n);
    bytes += n;
  }
  if (f.bad()) return Errorf("{}: read error while fingerprinting the run", p.string());
  return json{{"name", p.filename().string()}, {"bytes", bytes}, {"crc32", crc}};
}

// A file, or every regular file of a folder (sorted by name).
Result<json> PathIdentity(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return FileIdentity(path);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  json out = json::array();
  for (const auto& f : files) {
    SUBQ_ASSIGN_OR_RETURN(json id, FileIdentity(f));
    out.push_back(std::move(id));
  }
  return out;
}

namespace {

json StageJson(const StageRecipe& s) {
  return {{"tokens", s.tokens},       {"lr", s.lr},         {"batch_tokens", s.batch_tokens},
          {"train_mlp", s.train_mlp}, {"freeze_mlp", s.freeze_mlp}, {"temperature", s.temperature}};
}

void Flatten(const json& j, const std::string& prefix, std::map<std::string, std::string>* out) {
  if (j.is_object() && !j.empty()) {
    for (const auto& [k, v] : j.items()) Flatten(v, prefix.empty() ? k : prefix + "." + k, out);
  } else if (j.is_array() && !j.empty() && (j[0].is_object() || j[0].is_array())) {
    for (size_t i = 0; i < j.size(); ++i) Flatten(j[i], fmt::format("{}[{}]", prefix, i), out);
  } else {
    (*out)[prefix] = j.dump();
  }
}

}  // namespace

Result<json> RunFingerprint(const Recipe& r, int world_size) {
  const StudentRecipe& s = r.student;
  const DataRecipe& d = r.data;
  const OptimRecipe& o = r.optim;
  json recipe = {
      {"seed", r.seed}, {"seq_len", r.seq_len}, {"micro_batch", r.micro_batch},
      {"checkpoint_every", r.checkpoint_every}, {"probe_prompt", r.probe_prompt},
      {"student", {{"kind", s.kind}, {"n_qk_heads", s.n_qk_heads}, {"n_v_heads", s.n_v_heads},
                   {"head_dim", s.head_dim}, {"d_state", s.d_state}, {"n_groups", s.n_groups},
                   {"conv_kernel", s.conv_kernel}, {"chunk_size", s.chunk_size}, {"init", s.init},
                   {"attention_layers", s.attention_layers}, {"kept_heads", s.kept_heads}}},
      {"data", {{"separator", d.separator}, {"held_out_fraction", d.held_out_fraction},
                {"eval_tokens", d.eval_tokens}, {"teacher_samples", d.teacher_samples},
                {"sample_temperature", d.sample_temperature}, {"shards", d.shards}}},
      // Precision changes the result; checkpointing, head chunks and buckets only memory and speed.
      {"compute", {{"dtype", r.compute.dtype}, {"tf32", r.compute.tf32}}},
      {"optim", {{"beta1", o.beta1}, {"beta2", o.beta2}, {"weight_decay", o.weight_decay}, {"eps", o.eps},
                 {"grad_clip", o.grad_clip}, {"warmup_fraction", o.warmup_fraction},
                 {"decay_fraction", o.decay_fraction}, {"min_lr", o.min_lr}}},
      {"stages", {{StageName(0), StageJson(r.stages[0])}, {StageName(1), StageJson(r.stages[1])},
                  {StageName(2), StageJson(r.stages[2])}}}};
  if (s.kind == "oryx") {  // only oryx runs carry these (other runs keep their fingerprints)
    recipe["student"]["oryx_recurrence"] = s.oryx_recurrence;
    recipe["student"]["oryx_attention_fraction"] = s.oryx_attention_fraction;
  }
  if (s.kind == "mamba3")  // only for mamba3, so other kinds keep their fingerprints
    recipe["student"].update(
        {{"mimo_rank", s.mimo_rank}, {"outproj_norm", s.outproj_norm}, {"rope_fraction", s.rope_fraction}});
  SUBQ_ASSIGN_OR_RETURN(json teacher, PathIdentity(r.teacher));
  json tokenizer;
  if (!r.tokenizer.empty()) {
    SUBQ_ASSIGN_OR_RETURN(tokenizer, PathIdentity(r.tokenizer));
  }
  json data = json::array();
  for (const std::string& f : d.files) {
    SUBQ_ASSIGN_OR_RETURN(json id, FileIdentity(f));
    data.push_back(std::move(id));
  }
  if (!d.shards.empty()) {  // the shard folder's index (the shards are checked against it when read)
    SUBQ_ASSIGN_OR_RETURN(json id, FileIdentity(fs::path(d.shards) / "index.json"));
    data.push_back(std::move(id));
  }
  return json{{"recipe", recipe}, {"teacher", teacher}, {"tokenizer", tokenizer}, {"data_files", data},
              {"world_size", world_size}};
}

std::vector<std::string> FingerprintDifferences(const json& saved, const json& now) {
  std::map<std::string, std::string> a, b;
  Flatten(saved, "", &a);
  Flatten(now, "", &b);
  std::vector<std::string> out;
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) out.push_back(fmt::format("{}: {} -> (absent)", k, v));
    else if (it->second != v) out.push_back(fmt::format("{}: {} -> {}", k, v, it->second));
  }
  for (const auto& [k, v] : b)
    if (!a.count(k)) out.push_back(fmt::format("{}: (absent) -> {}", k, v));
  return out;
}

}  // namespace subq::train
