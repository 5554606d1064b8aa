// ReadCheckpoint (format dispatch), ReadHfFolder and the Llama tensor-set check shared by the readers.
#include "io/checkpoint.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>

#include "io/hf_config.h"
#include "io/quantized.h"

namespace subq {
namespace {

bool IsDir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsFile(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool HasGgufMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char m[4] = {};
  return in.read(m, 4) && std::memcmp(m, "GGUF", 4) == 0;
}

}  // namespace

Status ValidateLlamaTensors(const ModelConfig& c, const TensorStore& store, const std::string& path) {
  const int64_t V = c.vocab_size, D = c.dim, F = c.hidden_dim;
  const int64_t q_rows = int64_t{c.attn.n_heads} * c.attn.head_dim, kv_rows = int64_t{c.attn.n_kv_heads} * c.attn.head_dim;
  auto check = [&](const std::string& name, const std::vector<int64_t>& shape) -> Status {
    const TensorInfo* t = store.Find(name);
    if (t == nullptr) return Errorf("{}: missing tensor '{}' (expected shape {})", path, name, ShapeStr(shape));
    if (LogicalShape(*t) != shape)
      return Errorf("{}: tensor '{}' has shape {}, expected {}", t->file, name, ShapeStr(t->shape), ShapeStr(shape));
    return Status::Ok();
  };
  SUBQ_RETURN_IF_ERROR(check("model.embed_tokens.weight", {V, D}));
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    SUBQ_RETURN_IF_ERROR(check(p + "input_layernorm.weight", {D}));
    SUBQ_RETURN_IF_ERROR(check(p + "self_attn.q_proj.weight", {q_rows, D}));
    SUBQ_RETURN_IF_ERROR(check(p + "self_attn.k_proj.weight", {kv_rows, D}));
    SUBQ_RETURN_IF_ERROR(check(p + "self_attn.v_proj.weight", {kv_rows, D}));
    SUBQ_RETURN_IF_ERROR(check(p + "self_attn.o_proj.weight", {D, q_rows}));
    SUBQ_RETURN_IF_ERROR(check(p + "post_attention_layernorm.weight", {D}));
    SUBQ_RETURN_IF_ERROR(check(p + "mlp.gate_proj.weight", {F, D}));
    SUBQ_RETURN_IF_ERROR(check(p + "mlp.up_proj.weight", {F, D}));
    SUBQ_RETURN_IF_ERROR(check(p + "mlp.down_proj.weight", {D, F}));
  }
  SUBQ_RETURN_IF_ERROR(check("model.norm.weight", {D}));
  if (!c.tie_embeddings) SUBQ_RETURN_IF_ERROR(check("lm_head.weight", {V, D}));
  return Status::Ok();
}

Result<Checkpoint> ReadHfFolder(const std::string& dir_in) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!IsDir(dir)) return Errorf("{}: not a folder", dir);
  const std::string config_path = dir + "/config.json";
  if (!IsFile(config_path)) return Errorf("{}: missing config.json (an HF model folder needs one)", config_path);
  Checkpoint ck;
  ck.path = dir;
  ck.format = "hf";
  SUBQ_ASSIGN_OR_RETURN(ck.config, ReadHfConfigFile(config_path));
  if (ck.config.family == "llama") ck.config.attn.rope_interleaved = false;
  ck.tensors.source = dir;

  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  const bool is_single = IsFile(single);
  if (is_single) {
    SUBQ_RETURN_IF_ERROR(ReadSafetensors(single, &ck.tensors));
    ck.metadata.push_back("weights = model.safetensors");
  } else if (IsFile(index)) {
    SUBQ_RETURN_IF_ERROR(ReadShardedSafetensors(index, &ck.tensors));
    ck.metadata.push_back("weights = model.safetensors.index.json (sharded)");
  } else {
    return Errorf("{}: no model.safetensors or model.safetensors.index.json in the folder", dir);
  }
  SUBQ_ASSIGN_OR_RETURN(const QuantType quant, ReadQuantizationEntry(config_path));
  SUBQ_RETURN_IF_ERROR(ValidateQuantizedTensors(ck.tensors, quant, config_path));
  if (ck.config.family == "llama")
    SUBQ_RETURN_IF_ERROR(ValidateLlamaTensors(ck.config, ck.tensors, is_single ? single : index));
  ck.metadata.push_back("config = " + config_path);
  if (quant != QuantType::kNone) ck.metadata.push_back(fmt::format("quantization = {} (block 32)", QuantTypeName(quant)));
  return ck;
}

Result<Checkpoint> ReadCheckpoint(const std::string& path) {
  if (IsDir(path)) return ReadHfFolder(path);
  if (!IsFile(path)) return Errorf("{}: no such file or folder", path);
  if (EndsWith(path, "/config.json") || path == "config.json") {
    const size_t slash = path.find_last_of('/');
    return ReadHfFolder(slash == std::string::npos ? "." : path.substr(0, slash));
  }
  if (EndsWith(path, ".gguf") || HasGgufMagic(path)) return ReadGguf(path);
  if (EndsWith(path, ".safetensors"))
    return Errorf("{}: a bare safetensors file has no config; pass the folder with config.json", path);
  return ReadLlama2c(path);
}

}  // namespace subq
