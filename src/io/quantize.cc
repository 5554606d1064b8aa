#include "io/quantize.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/hf_write.h"
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
  SUBQ_RETURN_IF_ERROR(WriteJsonAtomic((fs::path(out_dir) / "config.json").string(), config));
  SUBQ_RETURN_IF_ERROR(CopyTokenizerFiles(ck, out_dir, &rep.copied));
  return rep;
}

}  // namespace subq
