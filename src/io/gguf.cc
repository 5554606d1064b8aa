// GGUF v3 (and v2) reader for archs llama and mamba2 (tensors: io/gguf_tensors.h). Every count, length and offset is
// checked against the bytes left in the file before it is used, so a corrupt file gives an error and
// never an unbounded allocation. Numeric arrays stay in the mapped file; only strings are copied.
// Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, kv pairs, tensor infos, padding to
// general.alignment, data section (tensor offsets are relative to its start).
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "io/byte_cursor.h"
#include "io/checkpoint.h"
#include "io/gguf_tensors.h"

namespace subq {
namespace {

enum GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// Size of a fixed-size scalar type, 0 for string/array/unknown.
size_t ScalarSize(uint32_t t) {
  switch (t) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
  }
}

const char* TypeName(uint32_t t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                "string", "array", "u64", "i64", "f64"};
  return t <= kF64 ? names[t] : "?";
}

double ScalarAt(uint32_t t, const uint8_t* p) {
  auto get = [p](auto v) { std::memcpy(&v, p, sizeof(v)); return v; };
  switch (t) {
    case kU8: return get(uint8_t{});
    case kI8: return get(int8_t{});
    case kU16: return get(uint16_t{});
    case kI16: return get(int16_t{});
    case kU32: return get(uint32_t{});
    case kI32: return get(int32_t{});
    case kF32: return get(float{});
    case kBool: return get(uint8_t{}) != 0;
    case kU64: return static_cast<double>(get(uint64_t{}));
    case kI64: return static_cast<double>(get(int64_t{}));
    case kF64: return get(double{});
    default: return 0;
  }
}

struct Value {
  uint32_t type = kU8;
  const uint8_t* raw = nullptr;  // scalar bytes, or the first element of a numeric array (in the file)
  std::string str;               // kString
  uint32_t elem_type = kU8;      // kArray
  uint64_t count = 0;            // kArray
  std::vector<Value> items;      // kArray of strings or arrays

  double Num() const { return ScalarAt(type, raw); }
  double NumAt(uint64_t i) const { return ScalarAt(elem_type, raw + i * ScalarSize(elem_type)); }
  bool IsNumber() const { return ScalarSize(type) != 0; }
};

constexpr int kMaxArrayDepth = 8;

Status ReadValue(ByteCursor& cur, uint32_t type, int depth, Value* v) {
  v->type = type;
  if (size_t s = ScalarSize(type)) {
    SUBQ_RETURN_IF_ERROR(cur.Need(s, "metadata value"));
    v->raw = cur.here();
    return cur.Skip(s, "metadata value");
  }
  if (type == kString) return cur.ReadString(&v->str, "metadata string");
  if (type != kArray) return Errorf("{}: unknown metadata value type {} at offset {}", cur.path(), type, cur.pos());
  if (depth >= kMaxArrayDepth) return Errorf("{}: metadata arrays nested deeper than {}", cur.path(), kMaxArrayDepth);
  SUBQ_RETURN_IF_ERROR(cur.Read(&v->elem_type, "array element type"));
  SUBQ_RETURN_IF_ERROR(cur.Read(&v->count, "array length"));
  if (size_t s = ScalarSize(v->elem_type)) {
    uint64_t bytes = 0;
    if (MulOverflows(v->count, s, &bytes)) return Errorf("{}: array length {} overflows", cur.path(), v->count);
    SUBQ_RETURN_IF_ERROR(cur.Need(bytes, "numeric array"));
    v->raw = cur.here();
    return cur.Skip(bytes, "numeric array");
  }
  if (v->elem_type != kString && v->elem_type != kArray)
    return Errorf("{}: unknown array element type {} at offset {}", cur.path(), v->elem_type, cur.pos());
  // Each string element takes >= 8 bytes, each nested array >= 12: bound the count before allocating.
  const uint64_t min_elem = v->elem_type == kString ? 8 : 12;
  if (v->count > cur.remaining() / min_elem)
    return Errorf("{}: array of {} {} at offset {} cannot fit in the {} bytes left", cur.path(), v->count,
                  TypeName(v->elem_type), cur.pos(), cur.remaining());
  v->items.resize(v->count);
  for (auto& item : v->items) SUBQ_RETURN_IF_ERROR(ReadValue(cur, v->elem_type, depth + 1, &item));
  return Status::Ok();
}

std::string Printable(const std::string& s, size_t max_len = 60) { return PrintableName(s, max_len); }

std::string FormatValue(const Value& v) {
  if (v.IsNumber()) return v.type == kBool ? (v.Num() != 0 ? "true" : "false") : fmt::format("{}", v.Num());
  if (v.type == kString) return "'" + Printable(v.str) + "'";
  std::string out = fmt::format("[{} x {}:", v.count, TypeName(v.elem_type));
  const uint64_t shown = std::min<uint64_t>(v.count, 5);
  for (uint64_t i = 0; i < shown; ++i) {
    out += i ? ", " : " ";
    if (ScalarSize(v.elem_type)) {
      out += fmt::format("{}", v.NumAt(i));
    } else {
      out += FormatValue(v.items[i]);
    }
  }
  return out + (v.count > shown ? ", ...]" : "]");
}

using gguf::GgufTensor;

class GgufReader {
 public:
  GgufReader(std::shared_ptr<MappedFile> f, const std::string& path)
      : file_(std::move(f)), path_(path), cur_(file_->data(), file_->size(), path) {}

  Result<Checkpoint> Read();

 private:
  Status ReadHeaderAndKv();
  Status ReadTensorInfos();
  Status FillConfig(Checkpoint* ck);
  Status FillLlamaConfig(Checkpoint* ck);
  Status FillMamba2Config(Checkpoint* ck);
  Status FillVocab(Checkpoint* ck);

  const Value* Get(const std::string& key) const {
    auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
  }
  // Numeric metadata as an int in [lo, hi]; missing -> *out unchanged unless required.
  Status GetInt(const std::string& key, bool required, int64_t lo, int64_t hi, int* out) const {
    const Value* v = Get(key);
    if (v == nullptr) return required ? Errorf("{}: missing metadata key '{}'", path_, key) : Status::Ok();
    if (!v->IsNumber()) return Errorf("{}: metadata '{}' has type {}, expected a number", path_, key, TypeName(v->type));
    const double x = v->Num();
    if (!(x >= lo && x <= hi) || x != std::floor(x))
      return Errorf("{}: metadata '{}' = {} is out of range [{}, {}]", path_, key, x, lo, hi);
    *out = static_cast<int>(x);
    return Status::Ok();
  }
  Status GetFloat(const std::string& key, float* out) const {
    const Value* v = Get(key);
    if (v == nullptr) return Status::Ok();
    if (!v->IsNumber() || !std::isfinite(v->Num()) || v->Num() <= 0)
      return Errorf("{}: metadata '{}' must be a positive number", path_, key);
    *out = static_cast<float>(v->Num());
    return Status::Ok();
  }

  std::shared_ptr<MappedFile> file_;
  std::string path_;
  ByteCursor cur_;
  uint32_t version_ = 0;
  uint64_t n_tensors_ = 0, n_kv_ = 0;
  std::map<std::string, Value> kv_;
  std::vector<std::string> kv_order_;
  std::vector<GgufTensor> tensors_;
};

Status GgufReader::ReadHeaderAndKv() {
  if (file_->size() < 4 || std::memcmp(file_->data(), "GGUF", 4) != 0)
    return Errorf("{}: not a GGUF file (bad magic; expected 'GGUF')", path_);
  SUBQ_RETURN_IF_ERROR(cur_.Skip(4, "magic"));
  SUBQ_RETURN_IF_ERROR(cur_.Read(&version_, "version"));
  if (version_ != 2 && version_ != 3)
    return Errorf("{}: unsupported GGUF version {} (subq reads versions 2 and 3)", path_, version_);
  SUBQ_RETURN_IF_ERROR(cur_.Read(&n_tensors_, "tensor count"));
  SUBQ_RETURN_IF_ERROR(cur_.Read(&n_kv_, "metadata count"));
  // A kv pair takes >= 13 bytes (key length, type, 1-byte value), a tensor info >= 28.
  if (n_kv_ > cur_.remaining() / 13 || n_tensors_ > cur_.remaining() / 28)
    return Errorf("{}: header claims {} tensors and {} metadata entries, more than the {}-byte file can hold", path_,
                  n_tensors_, n_kv_, file_->size());
  for (uint64_t i = 0; i < n_kv_; ++i) {
    std::string key;
    uint32_t type = 0;
    SUBQ_RETURN_IF_ERROR(cur_.ReadString(&key, "metadata key", 65535));
    SUBQ_RETURN_IF_ERROR(cur_.Read(&type, "metadata type"));
    Value v;
    Status st = ReadValue(cur_, type, 0, &v);
    if (!st.ok()) return Errorf("{} (metadata key '{}')", st.message(), Printable(key));
    if (kv_.count(key)) return Errorf("{}: metadata key '{}' appears twice", path_, Printable(key));
    kv_order_.push_back(key);
    kv_.emplace(std::move(key), std::move(v));
  }
  return Status::Ok();
}

Status GgufReader::ReadTensorInfos() {
  tensors_.resize(n_tensors_);
  for (auto& t : tensors_) {
    uint32_t n_dims = 0;
    SUBQ_RETURN_IF_ERROR(cur_.ReadString(&t.name, "tensor name", 65535));
    SUBQ_RETURN_IF_ERROR(cur_.Read(&n_dims, "tensor n_dims"));
    if (n_dims == 0 || n_dims > 4)
      return Errorf("{}: tensor '{}' has {} dims (must be 1..4)", path_, Printable(t.name), n_dims);
    std::vector<uint64_t> ne(n_dims);
    for (auto& d : ne) SUBQ_RETURN_IF_ERROR(cur_.Read(&d, "tensor dim"));
    SUBQ_RETURN_IF_ERROR(cur_.Read(&t.type, "tensor type"));
    SUBQ_RETURN_IF_ERROR(cur_.Read(&t.offset, "tensor offset"));
    uint64_t numel = 1;
    for (uint64_t d : ne) {
      if (d == 0 || MulOverflows(numel, d, &numel) || numel > file_->size())
        return Errorf("{}: tensor '{}' has implausible dims [{}] for a {}-byte file", path_, Printable(t.name),
                      fmt::join(ne, ", "), file_->size());
    }
    t.shape.assign(ne.rbegin(), ne.rend());  // ne0 is innermost: [ne0, ne1] is a row-major [ne1, ne0]
    SUBQ_RETURN_IF_ERROR(gguf::ComputeTensorBytes(path_, &t));
  }
  return Status::Ok();
}

Result<Checkpoint> GgufReader::Read() {
  SUBQ_RETURN_IF_ERROR(ReadHeaderAndKv());
  SUBQ_RETURN_IF_ERROR(ReadTensorInfos());

  uint64_t alignment = 32;
  if (const Value* a = Get("general.alignment")) {
    if (!a->IsNumber() || a->Num() < 1 || a->Num() > 65536 || (static_cast<uint64_t>(a->Num()) & (static_cast<uint64_t>(a->Num()) - 1)))
      return Errorf("{}: general.alignment must be a power of two up to 65536", path_);
    alignment = static_cast<uint64_t>(a->Num());
  }
  const uint64_t data_start = (cur_.pos() + alignment - 1) / alignment * alignment;
  if (data_start > file_->size())
    return Errorf("{}: truncated: the data section would start at {} but the file has {} bytes", path_, data_start,
                  file_->size());
  const uint64_t data_size = file_->size() - data_start;

  // Extents inside the data section, aligned, not overlapping.
  std::vector<const GgufTensor*> by_offset;
  for (const auto& t : tensors_) {
    if (t.offset % alignment != 0)
      return Errorf("{}: tensor '{}' offset {} is not a multiple of the alignment {}", path_, Printable(t.name),
                    t.offset, alignment);
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      return Errorf("{}: tensor '{}' ({} bytes at data offset {}) extends past the end of the file ({} data bytes)",
                    path_, Printable(t.name), t.nbytes, t.offset, data_size);
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->nbytes > by_offset[i]->offset)
      return Errorf("{}: tensors '{}' and '{}' overlap", path_, Printable(by_offset[i - 1]->name),
                    Printable(by_offset[i]->name));

  Checkpoint ck;
  ck.path = path_;
  ck.format = "gguf";
  ck.tensors.source = path_;
  const Value* arch = Get("general.architecture");
  if (arch == nullptr || arch->type != kString) return Errorf("{}: missing string metadata 'general.architecture'", path_);
  if (arch->str != "llama" && arch->str != "mamba2")
    return Errorf("{}: GGUF architecture '{}' is not supported (subq reads 'llama' and 'mamba2')", path_,
                  Printable(arch->str));
  ck.config.family = arch->str;
  for (const auto& t : tensors_)
    SUBQ_RETURN_IF_ERROR(gguf::AddTensor(arch->str, t, file_->data() + data_start + t.offset, path_, &ck.tensors));
  SUBQ_RETURN_IF_ERROR(FillConfig(&ck));
  SUBQ_RETURN_IF_ERROR(FillVocab(&ck));
  ck.metadata.push_back(fmt::format("gguf.version = {}", version_));
  for (const auto& k : kv_order_) ck.metadata.push_back(Printable(k, 200) + " = " + FormatValue(kv_.at(k)));
  ck.tensors.KeepAlive(file_);
  return ck;
}

Status GgufReader::FillConfig(Checkpoint* ck) {
  ModelConfig& c = ck->config;
  SUBQ_RETURN_IF_ERROR(c.family == "llama" ? FillLlamaConfig(ck) : FillMamba2Config(ck));
  c.tie_embeddings = !ck->tensors.Has("lm_head.weight");
  c.layers.assign(c.n_layers, LayerConfig{c.family == "llama" ? MixerKind::kAttention : MixerKind::kMamba2, {}});
  const std::string embed = c.family == "llama" ? "model.embed_tokens.weight" : "backbone.embeddings.weight";
  const TensorInfo* emb = ck->tensors.Find(embed);
  if (emb == nullptr) return Errorf("{}: missing tensor 'token_embd.weight'", path_);
  const std::vector<int64_t> shape = LogicalShape(*emb);
  if (shape.size() != 2 || shape[1] != c.dim)
    return Errorf("{}: tensor 'token_embd.weight' has shape {}, expected [vocab, {}]", path_, ShapeStr(shape), c.dim);
  c.vocab_size = static_cast<int>(shape[0]);
  return Status::Ok();
}

Status GgufReader::FillLlamaConfig(Checkpoint* ck) {
  ModelConfig& c = ck->config;
  constexpr int64_t kMax = 1 << 20;
  SUBQ_RETURN_IF_ERROR(GetInt("llama.embedding_length", true, 1, kMax, &c.dim));
  SUBQ_RETURN_IF_ERROR(GetInt("llama.feed_forward_length", true, 1, kMax, &c.hidden_dim));
  SUBQ_RETURN_IF_ERROR(GetInt("llama.block_count", true, 1, kMax, &c.n_layers));
  SUBQ_RETURN_IF_ERROR(GetInt("llama.attention.head_count", true, 1, kMax, &c.attn.n_heads));
  c.attn.n_kv_heads = c.attn.n_heads;
  SUBQ_RETURN_IF_ERROR(GetInt("llama.attention.head_count_kv", false, 1, kMax, &c.attn.n_kv_heads));
  c.max_seq_len = 2048;
  SUBQ_RETURN_IF_ERROR(GetInt("llama.context_length", false, 1, int64_t{1} << 30, &c.max_seq_len));
  c.norm_eps = 1e-5f;
  SUBQ_RETURN_IF_ERROR(GetFloat("llama.attention.layer_norm_rms_epsilon", &c.norm_eps));
  c.attn.rope_theta = 10000.0f;
  SUBQ_RETURN_IF_ERROR(GetFloat("llama.rope.freq_base", &c.attn.rope_theta));
  if (c.dim % c.attn.n_heads != 0)
    return Errorf("{}: llama.attention.head_count {} does not divide llama.embedding_length {}", path_, c.attn.n_heads,
                  c.dim);
  if (c.attn.n_heads % c.attn.n_kv_heads != 0)
    return Errorf("{}: llama.attention.head_count_kv {} does not divide head_count {}", path_, c.attn.n_kv_heads,
                  c.attn.n_heads);
  c.attn.head_dim = c.dim / c.attn.n_heads;
  SUBQ_RETURN_IF_ERROR(GetInt("llama.attention.key_length", false, 1, kMax, &c.attn.head_dim));
  int rope_dims = c.attn.head_dim;
  SUBQ_RETURN_IF_ERROR(GetInt("llama.rope.dimension_count", false, 1, kMax, &rope_dims));
  if (rope_dims != c.attn.head_dim)
    return Errorf("{}: llama.rope.dimension_count {} differs from the head dim {} (partial RoPE is not supported)",
                  path_, rope_dims, c.attn.head_dim);
  if (c.attn.head_dim % 2 != 0) return Errorf("{}: head dim {} is odd (RoPE needs pairs)", path_, c.attn.head_dim);
  c.attn.rope_interleaved = true;  // GGUF keeps Meta's interleaved q/k layout
  return Status::Ok();
}

// Keys of convert_hf_to_gguf.py's Mamba2Model: mamba2.{embedding_length, block_count, ssm.conv_kernel,
// ssm.inner_size, ssm.state_size, ssm.time_step_rank (= heads), ssm.group_count,
// attention.layer_norm_rms_epsilon}. The chunk size is not in the file (transformers' default, 256).
Status GgufReader::FillMamba2Config(Checkpoint* ck) {
  ModelConfig& c = ck->config;
  Mamba2Config& m = c.mamba2;
  constexpr int64_t kMax = 1 << 20;
  int d_inner = 0;
  SUBQ_RETURN_IF_ERROR(GetInt("mamba2.embedding_length", true, 1, kMax, &c.dim));
  SUBQ_RETURN_IF_ERROR(GetInt("mamba2.block_count", true, 1, kMax, &c.n_layers));
  SUBQ_RETURN_IF_ERROR(GetInt("mamba2.ssm.conv_kernel", true, 1, 64, &m.conv_kernel));
  SUBQ_RETURN_IF_ERROR(GetInt("mamba2.ssm.inner_size", true, 1, kMax, &d_inner));
  SUBQ_RETURN_IF_ERROR(GetInt("mamba2.ssm.state_size", true, 1, kMax, &m.state_size));
  SUBQ_RETURN_IF_ERROR(GetInt("mamba2.ssm.time_step_rank", true, 1, kMax, &m.n_heads));
  m.n_groups = 1;
  SUBQ_RETURN_IF_ERROR(GetInt("mamba2.ssm.group_count", false, 1, kMax, &m.n_groups));
  c.norm_eps = 1e-5f;
  SUBQ_RETURN_IF_ERROR(GetFloat("mamba2.attention.layer_norm_rms_epsilon", &c.norm_eps));
  if (d_inner % m.n_heads != 0 || m.n_heads % m.n_groups != 0)
    return Errorf("{}: mamba2.ssm.inner_size {} must be a multiple of mamba2.ssm.time_step_rank {} (heads), and that "
                  "of mamba2.ssm.group_count {}", path_, d_inner, m.n_heads, m.n_groups);
  m.head_dim = d_inner / m.n_heads;
  m.chunk_size = 256;
  m.norm_eps = c.norm_eps;  // llama.cpp's gated norm uses the same epsilon
  m.norm_grouped = true;    // llama.cpp normalises each of the n_groups groups of d_inner
  c.hidden_dim = 0;
  c.max_seq_len = 1 << 16;  // no positional limit; as the HF reader
  c.bos_id = 0, c.eos_id = 0;
  return Status::Ok();
}

Status GgufReader::FillVocab(Checkpoint* ck) {
  EmbeddedVocab& v = ck->vocab;
  if (const Value* m = Get("tokenizer.ggml.model"); m && m->type == kString) v.model = m->str;
  const Value* toks = Get("tokenizer.ggml.tokens");
  if (toks == nullptr) return Status::Ok();
  if (toks->type != kArray || toks->elem_type != kString)
    return Errorf("{}: metadata 'tokenizer.ggml.tokens' must be an array of strings", path_);
  if (toks->count > static_cast<uint64_t>(ck->config.vocab_size))
    return Errorf("{}: tokenizer.ggml.tokens has {} tokens but token_embd.weight has only {} rows", path_, toks->count,
                  ck->config.vocab_size);
  for (const auto& t : toks->items) v.tokens.push_back(t.str);
  auto numeric_array = [&](const char* key, auto* out) -> Status {
    const Value* a = Get(key);
    if (a == nullptr) return Status::Ok();
    if (a->type != kArray || !ScalarSize(a->elem_type) || a->count != toks->count)
      return Errorf("{}: metadata '{}' must be a numeric array of {} entries (one per token)", path_, key, toks->count);
    using T = typename std::decay_t<decltype(*out)>::value_type;
    out->resize(a->count);
    for (uint64_t i = 0; i < a->count; ++i) {
      const double x = a->NumAt(i);
      if (!(std::fabs(x) <= 2e9))  // also rejects NaN; keeps the cast to int/float defined
        return Errorf("{}: metadata '{}'[{}] = {} is out of range", path_, key, i, x);
      (*out)[i] = static_cast<T>(x);
    }
    return Status::Ok();
  };
  SUBQ_RETURN_IF_ERROR(numeric_array("tokenizer.ggml.scores", &v.scores));
  SUBQ_RETURN_IF_ERROR(numeric_array("tokenizer.ggml.token_type", &v.token_types));
  // Special ids outside the vocabulary (llama.cpp writes u32 -1 for "none") are left unset.
  auto token_id = [&](const char* key, int* out) {
    const Value* id = Get(key);
    if (id && id->IsNumber() && id->Num() >= 0 && id->Num() < static_cast<double>(toks->count))
      *out = static_cast<int>(id->Num());
  };
  token_id("tokenizer.ggml.bos_token_id", &v.bos_id);
  token_id("tokenizer.ggml.eos_token_id", &v.eos_id);
  token_id("tokenizer.ggml.unknown_token_id", &v.unk_id);
  if (v.bos_id >= 0) ck->config.bos_id = v.bos_id;
  if (v.eos_id >= 0) ck->config.eos_id = v.eos_id;
  return Status::Ok();
}

}  // namespace

Result<Checkpoint> ReadGguf(const std::string& path) {
  SUBQ_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  GgufReader reader(std::move(file), path);
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, reader.Read());
  if (ck.config.family == "llama") SUBQ_RETURN_IF_ERROR(ValidateLlamaTensors(ck.config, ck.tensors, path));
  return ck;
}

}  // namespace subq
