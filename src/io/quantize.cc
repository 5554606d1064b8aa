#include "io/quantize.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/quantized.h"
#include "io/safetensors_write.h"
#include "ops/weight.h"

namespace subq {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

enum class OutType { kQ8, kQ4, kF16, kBF16 };

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ordered_json LlamaConfigJson(const ModelConfig& c) {
  return {{"architectures", {"LlamaForCausalLM"}},
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

Result<ordered_json> OutputConfig(const Checkpoint& ck, OutType type) {
  ordered_json j;
  const ModelConfig& c = ck.config;
  if (ck.format == "hf") {
    const std::string p = ck.path + "/config.json";
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      j = ordered_json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
      return Errorf("{}: malformed JSON: {}", p, e.what());
    }
  } else if (c.family == "llama") {
    j = LlamaConfigJson(c);
  } else if (c.family == "mamba2") {
    SUBQ_ASSIGN_OR_RETURN(j, Mamba2ConfigJson(c, ck.tensors.Has("backbone.layers.0.mixer.conv1d.bias"), ck.path));
  } else {
    return Errorf("{}: cannot write an HF config for family '{}'", ck.path, c.family);
  }
  j.erase("quantization");
  if (type == OutType::kQ8 || type == OutType::kQ4) {
    j["quantization"] = {{"type", type == OutType::kQ8 ? "q8" : "q4"}, {"block", ops::kQuantBlock}};
  } else {
    j["torch_dtype"] = type == OutType::kF16 ? "float16" : "bfloat16";
  }
  return j;
}

// Meta/GGUF interleaved q/k rows -> HF rotate-half rows: HF row h*hd + t*hd/2 + i is Meta row h*hd + 2i + t.
void ToRotateHalf(Tensor* w, int64_t head_dim) {
  const int64_t rows = w->shape[0], cols = w->shape[1], half = head_dim / 2;
  std::vector<float> out(w->data.size());
  for (int64_t h = 0; h < rows / head_dim; ++h)
    for (int64_t t = 0; t < 2; ++t)
      for (int64_t i = 0; i < half; ++i)
        std::copy_n(&w->data[(h * head_dim + 2 * i + t) * cols], cols, &out[(h * head_dim + t * half + i) * cols]);
  w->data = std::move(out);
}

struct OutTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

template <typename T>
std::vector<uint8_t> AsBytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Appends `x` (named `name`) to `out` in the output type, or f32 when it is not a convertible matrix.
void Convert(const std::string& name, const Tensor& x, OutType type, std::vector<OutTensor>* out, QuantizeReport* rep) {
  const bool matrix = x.shape.size() == 2 && EndsWith(name, ".weight");
  const int64_t rows = matrix ? x.shape[0] : 0, cols = matrix ? x.shape[1] : 0;
  const bool quant = type == OutType::kQ8 || type == OutType::kQ4;
  if (!matrix || (quant && cols % ops::kQuantBlock != 0)) {
    if (matrix) rep->kept_f32.push_back(name);
    out->push_back({name, DType::kF32, x.shape, AsBytes(x.data)});
    return;
  }
  rep->converted.push_back(name);
  if (!quant) {
    std::vector<uint16_t> h(x.data.size());
    for (size_t i = 0; i < h.size(); ++i)
      h[i] = type == OutType::kF16 ? ops::FloatToHalfBits(x.data[i]) : ops::FloatToBF16Bits(x.data[i]);
    out->push_back({name, type == OutType::kF16 ? DType::kF16 : DType::kBF16, x.shape, AsBytes(h)});
    return;
  }
  const int64_t nb = cols / ops::kQuantBlock, row_bytes = type == OutType::kQ8 ? cols : cols / 2;
  std::vector<uint8_t> q(rows * row_bytes);
  std::vector<uint16_t> s(rows * nb);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data.data() + r * cols;
    if (type == OutType::kQ8) {
      QuantizeRowQ8(xr, cols, reinterpret_cast<int8_t*>(q.data() + r * row_bytes), s.data() + r * nb);
    } else {
      QuantizeRowQ4(xr, cols, q.data() + r * row_bytes, s.data() + r * nb);
    }
  }
  out->push_back({name, type == OutType::kQ8 ? DType::kI8 : DType::kU8, {rows, row_bytes}, std::move(q)});
  out->push_back({ScaleName(name), DType::kF16, {rows, nb}, AsBytes(s)});
}

Status CopyTokenizerFiles(const Checkpoint& ck, const fs::path& out, QuantizeReport* rep) {
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
    rep->copied.push_back(name);
  }
  return Status::Ok();
}

}  // namespace

Result<QuantizeReport> QuantizeCheckpoint(const std::string& model, const std::string& type_name,
                                          const std::string& out_dir) {
  OutType type;
  if (type_name == "q8") type = OutType::kQ8;
  else if (type_name == "q4") type = OutType::kQ4;
  else if (type_name == "f16") type = OutType::kF16;
  else if (type_name == "bf16") type = OutType::kBF16;
  else return Errorf("quantize: type '{}' is not one of q8, q4, f16, bf16", type_name);
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(model));
  std::error_code ec;
  if (ck.format == "hf" && fs::exists(out_dir, ec) && fs::equivalent(out_dir, ck.path, ec))
    return Errorf("{}: the output folder must differ from the model's folder", out_dir);
  SUBQ_ASSIGN_OR_RETURN(ordered_json config, OutputConfig(ck, type));

  QuantizeReport rep;
  rep.source_format = ck.format;
  const ModelConfig& c = ck.config;
  const bool permute_qk = c.family == "llama" && c.attn.rope_interleaved;  // HF folders keep rotate-half rows
  std::vector<OutTensor> out;
  for (const TensorInfo& t : ck.tensors.tensors()) {
    rep.bytes_in += t.nbytes;
    if (IsScaleOfQuantized(ck.tensors, t)) continue;
    SUBQ_ASSIGN_OR_RETURN(Tensor x, ck.tensors.LoadAny(t.name));
    if (permute_qk && (EndsWith(t.name, ".self_attn.q_proj.weight") || EndsWith(t.name, ".self_attn.k_proj.weight")))
      ToRotateHalf(&x, c.attn.head_dim);
    Convert(t.name, x, type, &out, &rep);
  }

  fs::create_directories(out_dir, ec);
  if (ec) return Errorf("{}: cannot create the folder: {}", out_dir, ec.message());
  std::vector<TensorBytes> views;
  for (const OutTensor& t : out) {
    views.push_back({t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
    rep.bytes_out += t.bytes.size();
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"quantization", type_name}};
  SUBQ_RETURN_IF_ERROR(WriteSafetensors((fs::path(out_dir) / "model.safetensors").string(), views, meta));
  const fs::path cfg = fs::path(out_dir) / "config.json", tmp = cfg.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << config.dump(2) << "\n";
    if (!f.flush()) return Errorf("{}: write failed", tmp.string());
  }
  fs::rename(tmp, cfg, ec);
  if (ec) return Errorf("{}: cannot rename to {}: {}", tmp.string(), cfg.string(), ec.message());
  SUBQ_RETURN_IF_ERROR(CopyTokenizerFiles(ck, out_dir, &rep));
  return rep;
}

}  // namespace subq
