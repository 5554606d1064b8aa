#include "io/gguf_export.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include <sentencepiece_processor.h>

#include "io/checkpoint.h"
#include "io/gguf_write.h"
#include "io/hf_write.h"
#include "io/quantized.h"

namespace subq {
namespace {

namespace fs = std::filesystem;
using gguf::GgmlType;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<uint8_t> F32Bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// llama.cpp token types.
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUnused = 5, kByte = 6 };

// The SentencePiece model to take the vocabulary from: `tokenizer` (a .model), else the checkpoint's.
std::string SentencePiecePath(const Checkpoint& ck, const std::string& tokenizer) {
  std::error_code ec;
  if (!tokenizer.empty()) return EndsWith(tokenizer, ".model") ? tokenizer : "";
  const fs::path dir = ck.format == "hf" ? fs::path(ck.path) : fs::path(ck.path).parent_path();
  if (ck.format == "hf" && fs::exists(dir / "tokenizer.json", ec)) return "";  // BPE tokenizer.json wins in subq
  for (const fs::path& p : {dir / "tokenizer.model", dir / fmt::format("tok{}.model", ck.config.vocab_size)})
    if (fs::is_regular_file(p, ec)) return p.string();
  return "";
}

Result<std::string> AddVocab(const Checkpoint& ck, const std::string& tokenizer, gguf::GgufWriter* w) {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  int bos = -1, eos = -1, unk = -1;
  std::string source;
  if (ck.format == "gguf" && tokenizer.empty()) {
    if (ck.vocab.empty() || ck.vocab.model != "llama")
      return Errorf("{}: the GGUF has no 'llama' (SentencePiece) vocabulary to carry over (pass --tokenizer X.model)",
                    ck.path);
    tokens = ck.vocab.tokens;
    scores = ck.vocab.scores;
    types.assign(ck.vocab.token_types.begin(), ck.vocab.token_types.end());
    bos = ck.vocab.bos_id, eos = ck.vocab.eos_id, unk = ck.vocab.unk_id;
    source = ck.path;
  } else {
    const std::string sp_path = SentencePiecePath(ck, tokenizer);
    if (sp_path.empty())
      return Errorf("{}: no SentencePiece tokenizer.model to build the GGUF vocabulary from (subq writes GGUF "
                    "vocabularies of model 'llama' only; pass --tokenizer X.model)", ck.path);
    sentencepiece::SentencePieceProcessor sp;
    if (auto st = sp.Load(sp_path); !st.ok()) return Errorf("{}: {}", sp_path, st.ToString());
    for (int i = 0; i < sp.GetPieceSize(); ++i) {
      tokens.push_back(sp.IdToPiece(i));
      scores.push_back(sp.GetScore(i));
      types.push_back(sp.IsUnknown(i) ? kUnknown : sp.IsControl(i) ? kControl : sp.IsUnused(i) ? kUnused
                                                 : sp.IsByte(i)   ? kByte   : kNormal);
    }
    bos = sp.bos_id(), eos = sp.eos_id(), unk = sp.unk_id();
    source = sp_path;
  }
  const int V = ck.config.vocab_size;
  if (static_cast<int>(tokens.size()) > V)
    return Errorf("{}: the vocabulary has {} tokens, the model's embedding only {} rows", source, tokens.size(), V);
  if (scores.size() != tokens.size()) scores.assign(tokens.size(), 0.0f);
  if (types.size() != tokens.size()) types.assign(tokens.size(), kNormal);
  for (int i = static_cast<int>(tokens.size()); i < V; ++i) {  // padded embedding rows (llama.cpp wants one token each)
    tokens.push_back(fmt::format("[PAD{}]", i));
    scores.push_back(0.0f);
    types.push_back(kUnused);
  }
  w->AddString("tokenizer.ggml.model", "llama");
  w->AddStringArray("tokenizer.ggml.tokens", tokens);
  w->AddF32Array("tokenizer.ggml.scores", scores);
  w->AddI32Array("tokenizer.ggml.token_type", types);
  if (bos >= 0) w->AddU32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  if (eos >= 0) w->AddU32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
  if (unk >= 0) w->AddU32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(unk));
  w->AddBool("tokenizer.ggml.add_bos_token", true);
  w->AddBool("tokenizer.ggml.add_eos_token", false);
  return source;
}

// A matrix in its own type when unquantized F32/F16/BF16, else f32.
Status AddMatrix(const Checkpoint& ck, const TensorInfo& t, const std::string& name, gguf::GgufWriter* w) {
  if (!ck.tensors.Has(ScaleName(t.name)) && (t.dtype == DType::kF16 || t.dtype == DType::kBF16)) {
    return w->AddTensor(name, t.dtype == DType::kF16 ? gguf::kF16 : gguf::kBF16, t.shape,
                        std::vector<uint8_t>(t.data, t.data + t.nbytes));
  }
  SUBQ_ASSIGN_OR_RETURN(Tensor x, ck.tensors.LoadAny(t.name));
  return w->AddTensor(name, gguf::kF32, x.shape, F32Bytes(x.data));
}

Status AddTensors(const Checkpoint& ck, const std::string& arch, gguf::GgufWriter* w) {
  const ModelConfig& c = ck.config;
  for (const TensorInfo& t : ck.tensors.tensors()) {
    if (EndsWith(t.name, "_scale") && ck.tensors.Has(t.name.substr(0, t.name.size() - 6))) continue;
    const std::string hf = t.name == "backbone.embedding.weight" ? "backbone.embeddings.weight" : t.name;
    const std::string g = gguf::GgufName(arch, hf);
    if (g.empty()) return Errorf("{}: tensor '{}' has no place in llama.cpp's '{}' arch", ck.path, t.name, arch);
    const bool qk = EndsWith(g, ".attn_q.weight") || EndsWith(g, ".attn_k.weight");
    if (qk && !c.attn.rope_interleaved) {  // HF rotate-half rows -> llama.cpp's interleaved rows
      SUBQ_ASSIGN_OR_RETURN(Tensor x, ck.tensors.LoadAny(t.name));
      ToInterleaved(&x, c.attn.head_dim);
      SUBQ_RETURN_IF_ERROR(w->AddTensor(g, gguf::kF32, x.shape, F32Bytes(x.data)));
      continue;
    }
    if (LogicalShape(t).size() == 2 && !EndsWith(g, ".ssm_conv1d.weight")) {
      SUBQ_RETURN_IF_ERROR(AddMatrix(ck, t, g, w));
      continue;
    }
    SUBQ_ASSIGN_OR_RETURN(Tensor x, ck.tensors.LoadAny(t.name));
    std::vector<int64_t> shape = x.shape;
    if (EndsWith(g, ".ssm_a")) {
      for (float& v : x.data) v = -std::exp(v);
      shape = {x.shape[0], 1};
    } else if (EndsWith(g, ".ssm_d")) {
      shape = {x.shape[0], 1};
    } else if (EndsWith(g, ".ssm_conv1d.weight")) {
      shape = {x.shape[0], x.shape.back()};
    } else if (EndsWith(g, ".ssm_norm.weight")) {
      shape = {c.mamba2.n_groups, x.shape[0] / c.mamba2.n_groups};
    }
    SUBQ_RETURN_IF_ERROR(w->AddTensor(g, gguf::kF32, shape, F32Bytes(x.data)));
  }
  return Status::Ok();
}

}  // namespace

Result<GgufExportReport> ExportGguf(const std::string& model, const std::string& out_path, const std::string& tokenizer) {
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(model));
  const ModelConfig& c = ck.config;
  GgufExportReport rep;
  for (const auto& l : c.layers) {
    const MixerKind want = c.family == "llama" ? MixerKind::kAttention : MixerKind::kMamba2;
    if (l.mixer != want || !l.attention_heads.empty())
      return Errorf("{}: hybrid layers have no llama.cpp arch (GGUF export covers Llama and Mamba-2)", model);
  }
  gguf::GgufWriter w;
  if (c.family == "llama") {
    if (c.attn.rope_scaling.type == "llama3")
      return Errorf("{}: llama3 rope scaling is not written to GGUF yet (llama.cpp needs a rope_freqs tensor)", model);
    rep.arch = "llama";
    w.AddString("general.architecture", "llama");
    w.AddString("general.name", fs::path(model).filename().string());
    w.AddU32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
    w.AddU32("llama.context_length", static_cast<uint32_t>(c.max_seq_len));
    w.AddU32("llama.embedding_length", static_cast<uint32_t>(c.dim));
    w.AddU32("llama.block_count", static_cast<uint32_t>(c.n_layers));
    w.AddU32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
    w.AddU32("llama.rope.dimension_count", static_cast<uint32_t>(c.attn.head_dim));
    w.AddU32("llama.attention.head_count", static_cast<uint32_t>(c.attn.n_heads));
    w.AddU32("llama.attention.head_count_kv", static_cast<uint32_t>(c.attn.n_kv_heads));
    w.AddU32("llama.attention.key_length", static_cast<uint32_t>(c.attn.head_dim));
    w.AddU32("llama.attention.value_length", static_cast<uint32_t>(c.attn.head_dim));
    w.AddF32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
    w.AddF32("llama.rope.freq_base", c.attn.rope_theta);
  } else if (c.family == "mamba2") {
    if (c.hidden_dim > 0)
      return Errorf("{}: Mamba-2 blocks with an MLP (distilled students) have no llama.cpp arch: its 'mamba2' has "
                    "none (convert --to hf writes them as GraniteMoeHybrid)", model);
    const Mamba2Config& m = c.mamba2;
    if (std::fabs(m.norm_eps - c.norm_eps) > 1e-12f)
      return Errorf("{}: the gated norm eps {} differs from the block norm eps {}; llama.cpp uses one", model,
                    m.norm_eps, c.norm_eps);
    if (!m.norm_grouped && m.n_groups > 1)
      return Errorf("{}: an ungrouped gated norm with {} groups has no llama.cpp equivalent", model, m.n_groups);
    rep.arch = "mamba2";
    w.AddString("general.architecture", "mamba2");
    w.AddString("general.name", fs::path(model).filename().string());
    w.AddU32("mamba2.vocab_size", static_cast<uint32_t>(c.vocab_size));
    w.AddU32("mamba2.context_length", 1u << 20);
    w.AddU32("mamba2.embedding_length", static_cast<uint32_t>(c.dim));
    w.AddU32("mamba2.feed_forward_length", 0);
    w.AddU32("mamba2.attention.head_count", 0);
    w.AddU32("mamba2.block_count", static_cast<uint32_t>(c.n_layers));
    w.AddU32("mamba2.ssm.conv_kernel", static_cast<uint32_t>(m.conv_kernel));
    w.AddU32("mamba2.ssm.inner_size", static_cast<uint32_t>(m.d_inner()));
    w.AddU32("mamba2.ssm.state_size", static_cast<uint32_t>(m.state_size));
    w.AddU32("mamba2.ssm.time_step_rank", static_cast<uint32_t>(m.n_heads));
    w.AddU32("mamba2.ssm.group_count", static_cast<uint32_t>(m.n_groups));
    w.AddF32("mamba2.attention.layer_norm_rms_epsilon", c.norm_eps);
  } else {
    return Errorf("{}: family '{}' has no llama.cpp arch (GGUF export covers Llama and Mamba-2)", model, c.family);
  }
  w.AddU32("general.file_type", 0);  // ALL_F32 (matrices may be F16/BF16 when the source was)
  SUBQ_ASSIGN_OR_RETURN(rep.vocab_source, AddVocab(ck, tokenizer, &w));
  SUBQ_RETURN_IF_ERROR(AddTensors(ck, rep.arch, &w));
  SUBQ_RETURN_IF_ERROR(w.Write(out_path));
  rep.bytes = w.tensor_bytes();
  for (const TensorInfo& t : ck.tensors.tensors())
    if (!(EndsWith(t.name, "_scale") && ck.tensors.Has(t.name.substr(0, t.name.size() - 6)))) ++rep.tensors;
  return rep;
}

}  // namespace subq
