// llama2.c .bin checkpoints (SPEC section 1): a header of 7 int32, then every weight as f32, stacked
// over layers. The reader validates the header and the exact file size, then points one TensorInfo per
// HF Llama tensor into the memory-mapped file (no copy).
#include <cstdint>
#include <string>
#include <vector>

#include "io/byte_cursor.h"
#include "io/checkpoint.h"

namespace subq {
namespace {

struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

constexpr int64_t kMaxDim = 1 << 20;  // anything larger is a corrupt or foreign file

Status ValidateHeader(const Llama2cHeader& h, const std::string& path) {
  const struct {
    const char* name;
    int64_t v;
  } fields[] = {{"dim", h.dim},         {"hidden_dim", h.hidden_dim},
                {"n_layers", h.n_layers}, {"n_heads", h.n_heads},
                {"n_kv_heads", h.n_kv_heads}, {"vocab_size", h.vocab_size < 0 ? -int64_t{h.vocab_size} : h.vocab_size},
                {"seq_len", h.seq_len}};
  for (const auto& f : fields)
    if (f.v <= 0 || f.v >= kMaxDim)
      return Errorf("{}: not a valid llama2.c checkpoint: header field {} = {} (must be in 1..{})", path, f.name, f.v,
                    kMaxDim - 1);
  if (h.dim % h.n_heads != 0)
    return Errorf("{}: llama2.c header: n_heads {} does not divide dim {}", path, h.n_heads, h.dim);
  if (h.n_heads % h.n_kv_heads != 0)
    return Errorf("{}: llama2.c header: n_kv_heads {} does not divide n_heads {}", path, h.n_kv_heads, h.n_heads);
  if ((h.dim / h.n_heads) % 2 != 0)
    return Errorf("{}: llama2.c header: head size {} is odd (RoPE needs pairs)", path, h.dim / h.n_heads);
  return Status::Ok();
}

}  // namespace

Result<Checkpoint> ReadLlama2c(const std::string& path) {
  SUBQ_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  ByteCursor cur(file->data(), file->size(), path);
  Llama2cHeader h{};
  if (file->size() < sizeof(h))
    return Errorf("{}: not a llama2.c checkpoint: {} bytes is shorter than the 28-byte header", path, file->size());
  SUBQ_RETURN_IF_ERROR(cur.Read(&h, "llama2.c header"));
  SUBQ_RETURN_IF_ERROR(ValidateHeader(h, path));

  const bool shared = h.vocab_size > 0;
  const int64_t vocab = shared ? h.vocab_size : -int64_t{h.vocab_size};
  const int64_t dim = h.dim, hidden = h.hidden_dim, n_layers = h.n_layers;
  const int64_t head_size = dim / h.n_heads;
  const int64_t kv_dim = head_size * h.n_kv_heads;

  // Every dim is < 2^20, so each product below fits easily in 128 bits (and the sum in 128 too).
  using u128 = unsigned __int128;
  const u128 L = n_layers;
  const u128 floats = u128(vocab) * dim                  // token_embedding
                      + L * dim                          // rms_att
                      + L * dim * dim                    // wq
                      + 2 * L * kv_dim * dim             // wk, wv
                      + L * dim * dim                    // wo
                      + L * dim                          // rms_ffn
                      + 3 * L * hidden * dim             // w1, w2, w3
                      + dim                              // rms_final
                      + u128(h.seq_len) * head_size      // freq_cis_real + freq_cis_imag (seq_len * head_size/2 each)
                      + (shared ? 0 : u128(vocab) * dim);  // wcls
  const u128 expected = sizeof(h) + floats * 4;
  if (expected != file->size()) {
    const uint64_t shown = expected > u128(UINT64_MAX) ? UINT64_MAX : static_cast<uint64_t>(expected);
    return Errorf(
        "{}: llama2.c header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, vocab_size {}, "
        "seq_len {}) implies {} bytes, but the file has {} bytes",
        path, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len, shown,
        file->size());
  }

  Checkpoint ck;
  ck.path = path;
  ck.format = "llama2c";
  ck.tensors.source = path;
  ModelConfig& c = ck.config;
  c.family = "llama";
  c.vocab_size = static_cast<int>(vocab);
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.max_seq_len = h.seq_len;
  c.norm_eps = 1e-5f;
  c.tie_embeddings = shared;
  c.bos_id = 1;
  c.eos_id = 2;
  c.attn.n_heads = h.n_heads;
  c.attn.n_kv_heads = h.n_kv_heads;
  c.attn.head_dim = static_cast<int>(head_size);
  c.attn.rope_theta = 10000.0f;
  c.attn.rope_interleaved = true;
  c.layers.assign(h.n_layers, LayerConfig{});

  // Walks the weights in file order; `per_layer` shape is repeated n_layers times when stacked.
  const uint8_t* p = file->data() + sizeof(h);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) -> Status {
    TensorInfo t;
    t.name = name;
    t.dtype = DType::kF32;
    t.nbytes = static_cast<size_t>(Tensor::NumelOf(shape)) * 4;
    t.shape = std::move(shape);
    t.data = p;
    t.file = path;
    p += t.nbytes;
    return ck.tensors.Add(std::move(t));
  };
  auto add_stacked = [&](const std::string& suffix, std::vector<int64_t> shape) -> Status {
    for (int64_t i = 0; i < n_layers; ++i)
      SUBQ_RETURN_IF_ERROR(add(fmt::format("model.layers.{}.{}", i, suffix), shape));
    return Status::Ok();
  };
  SUBQ_RETURN_IF_ERROR(add("model.embed_tokens.weight", {vocab, dim}));                // [V, D]
  SUBQ_RETURN_IF_ERROR(add_stacked("input_layernorm.weight", {dim}));                  // [D]
  SUBQ_RETURN_IF_ERROR(add_stacked("self_attn.q_proj.weight", {dim, dim}));            // [H*hd, D]
  SUBQ_RETURN_IF_ERROR(add_stacked("self_attn.k_proj.weight", {kv_dim, dim}));         // [Hkv*hd, D]
  SUBQ_RETURN_IF_ERROR(add_stacked("self_attn.v_proj.weight", {kv_dim, dim}));         // [Hkv*hd, D]
  SUBQ_RETURN_IF_ERROR(add_stacked("self_attn.o_proj.weight", {dim, dim}));            // [D, H*hd]
  SUBQ_RETURN_IF_ERROR(add_stacked("post_attention_layernorm.weight", {dim}));         // [D]
  SUBQ_RETURN_IF_ERROR(add_stacked("mlp.gate_proj.weight", {hidden, dim}));            // w1 [F, D]
  SUBQ_RETURN_IF_ERROR(add_stacked("mlp.down_proj.weight", {dim, hidden}));            // w2 [D, F]
  SUBQ_RETURN_IF_ERROR(add_stacked("mlp.up_proj.weight", {hidden, dim}));              // w3 [F, D]
  SUBQ_RETURN_IF_ERROR(add("model.norm.weight", {dim}));                               // [D]
  p += static_cast<size_t>(h.seq_len) * head_size * 4;                                 // freq_cis real + imag
  if (!shared) SUBQ_RETURN_IF_ERROR(add("lm_head.weight", {vocab, dim}));              // [V, D]
  if (p != file->data() + file->size())
    return Errorf("{}: internal error: llama2.c tensors end at {} of {} bytes", path, p - file->data(), file->size());

  ck.metadata.push_back(fmt::format("llama2c.header = dim {}, hidden_dim {}, n_layers {}, n_heads {}, "
                                    "n_kv_heads {}, vocab_size {}, seq_len {}",
                                    h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len));
  ck.metadata.push_back(fmt::format("llama2c.shared_classifier = {}", shared));
  ck.tensors.KeepAlive(std::move(file));
  return ck;
}

}  // namespace subq
