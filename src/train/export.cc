#include "train/export.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "io/hf_config.h"
#include "io/hf_write.h"
#include "io/safetensors_write.h"
#include "util/npy.h"
#include "util/plot.h"

namespace subq::train {
namespace fs = std::filesystem;

namespace {

Tensor ToSubq(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  Tensor out(std::vector<int64_t>(c.sizes().begin(), c.sizes().end()));
  std::memcpy(out.ptr(), c.data_ptr<float>(), out.numel() * sizeof(float));
  return out;
}

Status CopyFile(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return Errorf("cannot copy tokenizer {} to {}: {}", from.string(), to.string(), ec.message());
  return Status::Ok();
}

}  // namespace

Status ExportStudent(const Student& s, const std::string& out_dir) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& p : s.Params()) tensors.emplace_back(p.name, ToSubq(p.t));
  SUBQ_RETURN_IF_ERROR(WriteSafetensors((fs::path(out_dir) / "model.safetensors").string(), tensors));
  // One writer for config.json: the inverse of the engine's parser (io/hf_config.h).
  SUBQ_ASSIGN_OR_RETURN(const nlohmann::ordered_json config, WriteHfConfig(s.cfg));
  return WriteJsonAtomic((fs::path(out_dir) / "config.json").string(), config);
}

Status CopyTokenizer(const std::string& teacher_path, const std::string& tokenizer_override, int vocab_size,
                     const std::string& out_dir) {
  const fs::path out(out_dir);
  auto copy_bin = [&](const fs::path& bin) -> Status {
    SUBQ_RETURN_IF_ERROR(CopyFile(bin, out / "tokenizer.bin"));
    fs::path model = bin;
    model.replace_extension(".model");
    if (fs::exists(model)) SUBQ_RETURN_IF_ERROR(CopyFile(model, out / "tokenizer.model"));
    return Status::Ok();
  };
  if (!tokenizer_override.empty()) {
    const fs::path t(tokenizer_override);
    if (fs::is_directory(t)) return CopyTokenizer(t.string(), "", vocab_size, out_dir);
    if (t.extension() == ".bin") return copy_bin(t);
    if (t.extension() == ".model") return CopyFile(t, out / "tokenizer.model");
    return CopyFile(t, out / t.filename());
  }
  const fs::path tp(teacher_path);
  if (fs::is_directory(tp)) {
    int n = 0;
    for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
      if (fs::exists(tp / f)) {
        SUBQ_RETURN_IF_ERROR(CopyFile(tp / f, out / f));
        ++n;
      }
    if (n == 0) return Errorf("{}: no tokenizer files to copy (give 'tokenizer' in the recipe)", teacher_path);
    return Status::Ok();
  }
  for (const std::string name : {std::string("tokenizer.bin"), fmt::format("tok{}.bin", vocab_size)})
    if (fs::exists(tp.parent_path() / name)) return copy_bin(tp.parent_path() / name);
  return Errorf("{}: no tokenizer file beside the teacher to copy (give 'tokenizer' in the recipe)", teacher_path);
}

std::vector<int> SampleFromTeacher(const Teacher& t, int64_t n, int seq_len, double temp, uint64_t seed,
                                   const torch::Device& dev) {
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed);
  std::vector<int> out;
  out.reserve(n * seq_len);
  const int64_t kBatch = 128;
  for (int64_t b0 = 0; b0 < n; b0 += kBatch) {
    const int64_t b = std::min(kBatch, n - b0);
    auto ids = torch::full({b, 1}, t.config().bos_id, torch::kInt64).to(dev);
    while (ids.size(1) < seq_len) {
      auto last = t.Forward(ids).select(1, ids.size(1) - 1).to(torch::kCPU, torch::kFloat32);  // [b, V]
      auto next = torch::multinomial(torch::softmax(last / temp, -1), 1, false, gen);        // [b, 1]
      ids = torch::cat({ids, next.to(dev)}, 1);
    }
    auto cpu = ids.to(torch::kCPU).contiguous();
    const int64_t* p = cpu.data_ptr<int64_t>();
    out.insert(out.end(), p, p + cpu.numel());
  }
  return out;
}

Status WriteMixingPng(const Teacher& t, const Student& s, const std::vector<int>& ids, const torch::Device& dev,
                      const std::string& path) {
  torch::NoGradGuard ng;
  auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).view({1, -1}).to(dev);
  Teacher::Trace tr;
  t.Forward(x, &tr, /*want_probs=*/true);
  std::vector<Tensor> mats;
  std::vector<std::string> caps;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    if (s.is_attention(l)) continue;
    auto ms = s.MaterializeOnInput(l, tr.inputs[l])[0].clamp(0.0, 1.0);  // [H, L, L], teacher's range
    auto mt = tr.probs[l][0];                                             // [H, L, L]
    for (int64_t h = 0; h < std::min<int64_t>(2, std::min(ms.size(0), mt.size(0))); ++h) {
      mats.push_back(ToSubq(mt[h]));
      caps.push_back(fmt::format("L{} H{} teacher", l, h));
      mats.push_back(ToSubq(ms[h]));
      caps.push_back(fmt::format("L{} H{} student", l, h));
    }
  }
  if (mats.empty()) return Status::Ok();
  const int64_t L = mats[0].dim(0);
  Tensor stack({static_cast<int64_t>(mats.size()), L, L});  // [panels, L, L]
  for (size_t k = 0; k < mats.size(); ++k) std::copy(mats[k].data.begin(), mats[k].data.end(), stack.ptr() + k * L * L);
  // The matrices stay beside the PNG (mixing_*.npy) for other plots; the PNG is drawn by plot.py.
  SUBQ_RETURN_IF_ERROR(WriteNpy(stack, std::filesystem::path(path).replace_extension(".npy").string()));
  return PlotHeatmapsPng(stack, caps, "attention (teacher) vs materialized mixing matrix (student)", path);
}

}  // namespace subq::train
