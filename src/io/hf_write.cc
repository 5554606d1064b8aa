#include "io/hf_write.h"

#include <filesystem>
#include <fstream>

namespace subq {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

ordered_json LlamaConfigJson(const ModelConfig& c) {
  ordered_json j = {{"architectures", {"LlamaForCausalLM"}},
                    {"model_type", "llama"},
                    {"hidden_size", c.dim},
                    {"intermediate_size", c.hidden_dim},
                    {"num_hidden_layers", c.n_layers},
                    {"num_attention_heads", c.attn.n_heads},
                    {"num_key_value_heads", c.attn.n_kv_heads},
                    {"head_dim", c.attn.head_dim},
                    {"vocab_size", c.vocab_size},
                    {"max_position_embeddings", c.max_seq_len},
                    {"rms_norm_eps", c.norm_eps},
                    {"rope_theta", c.attn.rope_theta},
                    {"hidden_act", "silu"},
                    {"tie_word_embeddings", c.tie_embeddings},
                    {"bos_token_id", c.bos_id},
                    {"eos_token_id", c.eos_id}};
  const RopeScaling& r = c.attn.rope_scaling;
  if (r.type == "llama3")
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", r.factor},
                         {"low_freq_factor", r.low_freq_factor},
                         {"high_freq_factor", r.high_freq_factor},
                         {"original_max_position_embeddings", r.original_max_position_embeddings}};
  return j;
}

Result<ordered_json> Mamba2ConfigJson(const ModelConfig& c, bool conv_bias, const std::string& path) {
  const Mamba2Config& m = c.mamba2;
  if (m.d_inner() % c.dim != 0)
    return Errorf("{}: d_inner {} is not a multiple of the model width {}; transformers' Mamba2Config needs an "
                  "integral expand", path, m.d_inner(), c.dim);
  return ordered_json{{"architectures", {"Mamba2ForCausalLM"}},
                      {"model_type", "mamba2"},
                      {"hidden_size", c.dim},
                      {"num_hidden_layers", c.n_layers},
                      {"vocab_size", c.vocab_size},
                      {"num_heads", m.n_heads},
                      {"head_dim", m.head_dim},
                      {"state_size", m.state_size},
                      {"n_groups", m.n_groups},
                      {"conv_kernel", m.conv_kernel},
                      {"expand", m.d_inner() / c.dim},
                      {"chunk_size", m.chunk_size},
                      {"layer_norm_epsilon", c.norm_eps},
                      {"tie_word_embeddings", c.tie_embeddings},
                      {"use_conv_bias", conv_bias},
                      {"use_bias", false},
                      {"hidden_act", "silu"},
                      {"bos_token_id", c.bos_id},
                      {"eos_token_id", c.eos_id}};
}

void ToRotateHalf(Tensor* w, int64_t head_dim) {
  const int64_t rows = w->shape[0], cols = w->shape[1], half = head_dim / 2;
  std::vector<float> out(w->data.size());
  for (int64_t h = 0; h < rows / head_dim; ++h)
    for (int64_t t = 0; t < 2; ++t)
      for (int64_t i = 0; i < half; ++i)
        std::copy_n(&w->data[(h * head_dim + 2 * i + t) * cols], cols, &out[(h * head_dim + t * half + i) * cols]);
  w->data = std::move(out);
}

void ToInterleaved(Tensor* w, int64_t head_dim) {
  const int64_t rows = w->shape[0], cols = w->shape[1], half = head_dim / 2;
  std::vector<float> out(w->data.size());
  for (int64_t h = 0; h < rows / head_dim; ++h)
    for (int64_t t = 0; t < 2; ++t)
      for (int64_t i = 0; i < half; ++i)
        std::copy_n(&w->data[(h * head_dim + t * half + i) * cols], cols, &out[(h * head_dim + 2 * i + t) * cols]);
  w->data = std::move(out);
}

Status CopyTokenizerFiles(const Checkpoint& ck, const std::string& out_dir, std::vector<std::string>* copied) {
  const fs::path out(out_dir);
  std::vector<std::pair<fs::path, std::string>> files;  // source, name in the output folder
  std::error_code ec;
  if (ck.format == "hf") {
    for (const char* n : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                          "generation_config.json"})
      files.push_back({fs::path(ck.path) / n, n});
  } else if (ck.format == "llama2c") {  // a SentencePiece model beside the .bin, as `tok512.model`
    const fs::path dir = fs::path(ck.path).parent_path();
    files.push_back({dir / "tokenizer.model", "tokenizer.model"});
    files.push_back({dir / fmt::format("tok{}.model", ck.config.vocab_size), "tokenizer.model"});
  }
  for (const auto& [src, name] : files) {
    if (!fs::is_regular_file(src, ec) || fs::exists(out / name, ec)) continue;
    fs::copy_file(src, out / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return Errorf("{}: cannot copy to {}: {}", src.string(), (out / name).string(), ec.message());
    copied->push_back(name);
  }
  return Status::Ok();
}

Status WriteLlamaTokenizerConfig(const std::string& out_dir, int max_seq_len, std::vector<std::string>* written) {
  const fs::path out(out_dir);
  std::error_code ec;
  if (!fs::exists(out / "tokenizer.model", ec) || fs::exists(out / "tokenizer_config.json", ec) ||
      fs::exists(out / "tokenizer.json", ec))
    return Status::Ok();
  const ordered_json tc = {{"tokenizer_class", "LlamaTokenizer"}, {"add_bos_token", true}, {"add_eos_token", false},
                           {"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}, {"legacy", true},
                           {"model_max_length", max_seq_len}};
  SUBQ_RETURN_IF_ERROR(WriteJsonAtomic((out / "tokenizer_config.json").string(), tc));
  written->push_back("tokenizer_config.json");
  return Status::Ok();
}

Status WriteJsonAtomic(const std::string& path, const ordered_json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Errorf("{}: cannot open for writing", tmp);
    f << j.dump(2) << "\n";
    if (!f.flush()) return Errorf("{}: write failed", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Errorf("{}: cannot rename to {}: {}", tmp, path, ec.message());
  return Status::Ok();
}

}  // namespace subq
