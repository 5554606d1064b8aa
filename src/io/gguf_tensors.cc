#include "io/gguf_tensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "io/byte_cursor.h"
#include "io/quantized.h"
#include "ops/weight.h"

namespace subq::gguf {
namespace {

constexpr int64_t kBlock = 32;  // Q8_0 and Q4_0 blocks: 32 values of one row
constexpr int64_t kQ8Bytes = 2 + 32, kQ4Bytes = 2 + 16;

bool IsQuantized(uint32_t type) { return type == kQ8_0 || type == kQ4_0; }

// GGUF blocks [rows, cols/32] x (f16 d, payload) -> planar payload [rows, cols * bits / 8] then d [rows, cols/32].
std::vector<uint8_t> Repack(const GgufTensor& t, const uint8_t* data) {
  const int64_t rows = t.shape[0], nb = t.shape[1] / kBlock;
  const int64_t payload = t.type == kQ8_0 ? 32 : 16, block_bytes = 2 + payload;
  std::vector<uint8_t> out(static_cast<size_t>(rows * nb * (payload + 2)));
  uint8_t* values = out.data();
  uint8_t* scales = out.data() + rows * nb * payload;
  for (int64_t b = 0; b < rows * nb; ++b) {
    const uint8_t* src = data + b * block_bytes;
    std::memcpy(scales + 2 * b, src, 2);
    std::memcpy(values + b * payload, src + 2, payload);
  }
  return out;
}

struct Renamed {
  std::string hf;
  std::vector<int64_t> shape;  // empty: as in the file
};

Status AddReshaped(const GgufTensor& t, const uint8_t* data, const std::string& path, const Renamed& r,
                   TensorStore* store) {
  if (IsQuantized(t.type))
    return Errorf("{}: tensor '{}' is {}; subq reads it only as F32, F16 or BF16", path, PrintableName(t.name),
                  GgmlTypeName(t.type));
  const DType dt = t.type == kF32 ? DType::kF32 : t.type == kF16 ? DType::kF16 : DType::kBF16;
  return store->Add({r.hf, dt, r.shape.empty() ? t.shape : r.shape, data, t.nbytes, path});
}

// ssm_a = -exp(A_log) [H, 1] -> A_log [H] (f32).
Status AddALog(const GgufTensor& t, const uint8_t* data, const std::string& path, const std::string& hf,
               TensorStore* store) {
  if (t.type != kF32 && t.type != kF16)
    return Errorf("{}: tensor '{}' is {}; subq reads it as F32 or F16", path, PrintableName(t.name), GgmlTypeName(t.type));
  const int64_t h = t.shape[0];
  std::vector<uint8_t> bytes(h * 4);
  for (int64_t i = 0; i < h; ++i) {
    float a;
    if (t.type == kF32) {
      std::memcpy(&a, data + 4 * i, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, data + 2 * i, 2);
      a = HalfToFloat(b);
    }
    if (!(a < 0.0f) || !std::isfinite(a))
      return Errorf("{}: tensor '{}'[{}] = {} must be negative (llama.cpp stores A = -exp(A_log))", path,
                    PrintableName(t.name), i, a);
    const float a_log = std::log(-a);
    std::memcpy(bytes.data() + 4 * i, &a_log, 4);
  }
  return store->Add({hf, DType::kF32, {h}, store->Own(std::move(bytes)), static_cast<size_t>(h * 4), path});
}

}  // namespace

std::string GgmlTypeName(uint32_t type) {
  static const std::map<uint32_t, const char*> names = {
      {0, "F32"},     {1, "F16"},      {2, "Q4_0"},    {3, "Q4_1"},     {6, "Q5_0"},    {7, "Q5_1"},
      {8, "Q8_0"},    {9, "Q8_1"},     {10, "Q2_K"},   {11, "Q3_K"},    {12, "Q4_K"},   {13, "Q5_K"},
      {14, "Q6_K"},   {15, "Q8_K"},    {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"},
      {20, "IQ4_NL"}, {21, "IQ3_S"},   {22, "IQ2_S"},  {23, "IQ4_XS"},  {24, "I8"},     {25, "I16"},
      {26, "I32"},    {27, "I64"},     {28, "F64"},    {29, "IQ1_M"},   {30, "BF16"},   {34, "TQ1_0"},
      {35, "TQ2_0"},  {39, "MXFP4"}};
  auto it = names.find(type);
  return fmt::format("{} ({})", it == names.end() ? "unknown" : it->second, type);
}

Status ComputeTensorBytes(const std::string& path, GgufTensor* t) {
  uint64_t numel = 1;
  for (int64_t d : t->shape) numel *= static_cast<uint64_t>(d);  // bounded by the caller
  switch (t->type) {
    case kF32: t->nbytes = numel * 4; return Status::Ok();
    case kF16:
    case kBF16: t->nbytes = numel * 2; return Status::Ok();
    case kQ8_0:
    case kQ4_0:
      if (t->shape.size() != 2 || t->shape[1] % kBlock != 0)
        return Errorf("{}: tensor '{}' is {} with shape {}; subq reads {} matrices whose rows are whole blocks of {}",
                      path, PrintableName(t->name), GgmlTypeName(t->type), ShapeStr(t->shape), GgmlTypeName(t->type),
                      kBlock);
      t->nbytes = numel / kBlock * (t->type == kQ8_0 ? kQ8Bytes : kQ4Bytes);
      return Status::Ok();
    default:
      return Errorf("{}: tensor '{}' has GGML type {}; subq reads F32, F16, BF16, Q8_0 and Q4_0", path,
                    PrintableName(t->name), GgmlTypeName(t->type));
  }
}

namespace {

// GGUF name -> HF name, per arch: top-level tensors and the per-block leaves ("blk.N." + leaf).
struct NameTables {
  std::map<std::string, std::map<std::string, std::string>> top, blk;
};

const NameTables& Tables() {
  static const NameTables t = {
      {{"llama",
        {{"token_embd.weight", "model.embed_tokens.weight"},
         {"output_norm.weight", "model.norm.weight"},
         {"output.weight", "lm_head.weight"}}},
       {"mamba2",
        {{"token_embd.weight", "backbone.embeddings.weight"},
         {"output_norm.weight", "backbone.norm_f.weight"},
         {"output.weight", "lm_head.weight"}}}},
      {{"llama",
        {{"attn_norm.weight", "input_layernorm.weight"},   {"attn_q.weight", "self_attn.q_proj.weight"},
         {"attn_k.weight", "self_attn.k_proj.weight"},     {"attn_v.weight", "self_attn.v_proj.weight"},
         {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
         {"ffn_gate.weight", "mlp.gate_proj.weight"},      {"ffn_up.weight", "mlp.up_proj.weight"},
         {"ffn_down.weight", "mlp.down_proj.weight"}}},
       {"mamba2",
        {{"attn_norm.weight", "norm.weight"},           {"ssm_in.weight", "mixer.in_proj.weight"},
         {"ssm_conv1d.weight", "mixer.conv1d.weight"}, {"ssm_conv1d.bias", "mixer.conv1d.bias"},
         {"ssm_dt.bias", "mixer.dt_bias"},             {"ssm_a", "mixer.A_log"},
         {"ssm_d", "mixer.D"},                         {"ssm_norm.weight", "mixer.norm.weight"},
         {"ssm_out.weight", "mixer.out_proj.weight"}}}}};
  return t;
}

const char* LayerPrefix(const std::string& arch) { return arch == "llama" ? "model.layers." : "backbone.layers."; }

}  // namespace

std::string HfName(const std::string& arch, const std::string& g) {
  const auto& top = Tables().top;
  const auto& blk = Tables().blk;
  const std::string prefix = LayerPrefix(arch);
  if (!top.count(arch)) return "";
  if (auto it = top.at(arch).find(g); it != top.at(arch).end()) return it->second;
  if (g.rfind("blk.", 0) != 0) return "";
  const size_t dot = g.find('.', 4);
  if (dot == std::string::npos || dot == 4 || dot - 4 > 6) return "";
  const std::string idx = g.substr(4, dot - 4);
  if (!std::all_of(idx.begin(), idx.end(), [](char c) { return c >= '0' && c <= '9'; })) return "";
  auto it = blk.at(arch).find(g.substr(dot + 1));
  return it == blk.at(arch).end() ? "" : fmt::format("{}{}.{}", prefix, std::stoi(idx), it->second);
}

std::string GgufName(const std::string& arch, const std::string& hf) {
  const auto& top = Tables().top;
  const auto& blk = Tables().blk;
  if (!top.count(arch)) return "";
  for (const auto& [g, h] : top.at(arch))
    if (h == hf) return g;
  const std::string prefix = LayerPrefix(arch);
  if (hf.rfind(prefix, 0) != 0) return "";
  const size_t dot = hf.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size()) return "";
  const std::string idx = hf.substr(prefix.size(), dot - prefix.size());
  if (idx.size() > 6 || !std::all_of(idx.begin(), idx.end(), [](char c) { return c >= '0' && c <= '9'; })) return "";
  for (const auto& [g, h] : blk.at(arch))
    if (h == hf.substr(dot + 1)) return fmt::format("blk.{}.{}", std::stoi(idx), g);
  return "";
}

Status AddTensor(const std::string& arch, const GgufTensor& t, const uint8_t* data, const std::string& path,
                 TensorStore* store) {
  const std::string hf = HfName(arch, t.name);
  if (hf.empty()) return Errorf("{}: unexpected tensor '{}' for arch {}", path, PrintableName(t.name), arch);
  auto ends_with = [&](const char* s) {
    const size_t n = std::strlen(s);
    return t.name.size() >= n && t.name.compare(t.name.size() - n, n, s) == 0;
  };
  if (arch == "mamba2") {
    const auto& s = t.shape;
    auto bad = [&](const char* what) {
      return Errorf("{}: tensor '{}' has shape {}, expected {}", path, PrintableName(t.name), ShapeStr(s), what);
    };
    const bool column = s.size() == 2 && s[1] == 1;
    if (ends_with(".ssm_a")) return column ? AddALog(t, data, path, hf, store) : bad("[n_heads, 1]");
    if (ends_with(".ssm_d")) return column ? AddReshaped(t, data, path, {hf, {s[0]}}, store) : bad("[n_heads, 1]");
    if (ends_with(".ssm_conv1d.weight"))
      return s.size() == 2 ? AddReshaped(t, data, path, {hf, {s[0], 1, s[1]}}, store) : bad("[conv_dim, kernel]");
    if (ends_with(".ssm_norm.weight"))
      return s.size() == 2 ? AddReshaped(t, data, path, {hf, {s[0] * s[1]}}, store) : bad("[n_groups, d_inner / n_groups]");
  }
  if (!IsQuantized(t.type)) return AddReshaped(t, data, path, {hf, {}}, store);
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const bool q8 = t.type == kQ8_0;
  const size_t value_bytes = static_cast<size_t>(rows * (q8 ? cols : cols / 2));
  const uint8_t* buf = store->Own(Repack(t, data));
  SUBQ_RETURN_IF_ERROR(store->Add({hf, q8 ? DType::kI8 : DType::kU8, {rows, q8 ? cols : cols / 2}, buf, value_bytes, path}));
  return store->Add({ScaleName(hf), DType::kF16, {rows, cols / kBlock}, buf + value_bytes,
                     static_cast<size_t>(rows * cols / kBlock * 2), path});
}

}  // namespace subq::gguf
