// WriteHfConfig is the inverse of ParseHfConfig: Parse(Write(c)) == c field by field (model/schema.h
// VisitFields) for every family and hybrid kind, starting from the real stories260K config; configs the
// family's config.json cannot carry are refused, not written wrong.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io/checkpoint.h"
#include "io/hf_config.h"
#include "io/io_test_util.h"
#include "model/schema.h"

namespace subq {
namespace {

ModelConfig RoundTrip(const ModelConfig& c) {
  auto j = WriteHfConfig(c);
  EXPECT_TRUE(j.ok()) << j.status().message();
  if (!j.ok()) return {};
  ModelConfig back;
  const nlohmann::json parsed = nlohmann::json::parse(j->dump());  // through text, as on disk
  Status s = ParseHfConfig(parsed, "config.json", &back);
  EXPECT_TRUE(s.ok()) << s.message() << "\n" << j->dump(2);
  return back;
}

void ExpectRoundTrip(const ModelConfig& c, const std::string& what) {
  const auto diff = ConfigDiff(c, RoundTrip(c));
  EXPECT_TRUE(diff.empty()) << what << ": " << fmt::format("{}", fmt::join(diff, "; "));
}

// The real teacher's config (HF folder), the base every student config below is derived from.
ModelConfig Teacher() {
  auto ck = ReadCheckpoint(testing::Stories("hf"));
  EXPECT_TRUE(ck.ok()) << ck.status().message();
  return ck.ok() ? ck->config : ModelConfig{};
}

// A student of `family` on the teacher's dims (defaults elsewhere, as the parsers leave them).
ModelConfig Student(const ModelConfig& t, const std::string& family, MixerKind kind) {
  ModelConfig c;
  c.family = family;
  c.vocab_size = t.vocab_size, c.dim = t.dim, c.hidden_dim = t.hidden_dim, c.n_layers = t.n_layers;
  c.norm_eps = t.norm_eps, c.tie_embeddings = t.tie_embeddings, c.bos_id = t.bos_id, c.eos_id = t.eos_id;
  c.max_seq_len = 1 << 16;
  c.layers.assign(c.n_layers, LayerConfig{kind, {}});
  if (kind == MixerKind::kMamba2) c.mamba2 = {.n_heads = 8, .head_dim = 16, .state_size = 8, .n_groups = 2,
                                              .conv_kernel = 3, .chunk_size = 32, .norm_eps = t.norm_eps};
  if (kind == MixerKind::kDiscreteMamba2)
    c.dm2 = {.d_state = 8, .n_qk_heads = 4, .n_v_heads = 8, .head_dim = 8, .conv_kernel = 4, .chunk_size = 16};
  if (kind == MixerKind::kMamba3)
    c.mamba3 = {.n_heads = 8, .head_dim = 16, .state_size = 8, .n_groups = 2, .mimo_rank = 1, .chunk_size = 16};
  if (kind == MixerKind::kGatedDeltaNet)
    c.gdn = {.n_qk_heads = 4, .n_v_heads = 8, .head_k_dim = 8, .head_v_dim = 12, .conv_kernel = 4, .chunk_size = 64,
             .norm_eps = t.norm_eps};
  return c;
}

void AddAttentionLayers(const ModelConfig& t, ModelConfig* c, std::vector<int> layers) {
  c->attn = t.attn;
  for (int l : layers) c->layers[l].mixer = MixerKind::kAttention;
}

TEST(HfConfigWrite, VisitFieldsCoversEveryField) {
  ModelConfig c;
  int n = 0;
  VisitFields(c, [&n](const std::string&, const auto&) { ++n; });
  EXPECT_EQ(n, kModelConfigScalarFields);
  // A field added to a config struct changes its size: add it to VisitFields, then update these.
  static_assert(sizeof(RopeScaling) == 48 && sizeof(AttentionConfig) == 72, "VisitFields: attention fields");
  static_assert(sizeof(Mamba2Config) == 32 && sizeof(DiscreteMamba2Config) == 28, "VisitFields: SSM fields");
  static_assert(sizeof(Mamba3Config) == 32 && sizeof(GatedDeltaNetConfig) == 28, "VisitFields: SSM fields");
  static_assert(sizeof(LayerConfig) == 32, "VisitFields: layer fields");
  c.layers.resize(3);
  n = 0;
  VisitFields(c, [&n](const std::string&, const auto&) { ++n; });
  EXPECT_EQ(n, kModelConfigScalarFields + 6);
}

TEST(HfConfigWrite, LlamaTeacherRoundTrips) {
  const ModelConfig t = Teacher();
  ASSERT_EQ(t.family, "llama");
  ExpectRoundTrip(t, "stories260K hf");
  ModelConfig r = t;  // llama3 rope scaling and an untied head
  r.attn.rope_scaling = {"llama3", 32.0f, 1.0f, 4.0f, 8192};
  r.tie_embeddings = false;
  ExpectRoundTrip(r, "llama3 rope");
  auto interleaved = ReadCheckpoint(testing::Stories("stories260K.bin"));  // llama2.c: interleaved q/k rows
  ASSERT_TRUE(interleaved.ok());
  EXPECT_FALSE(WriteHfConfig(interleaved->config).ok());
}

TEST(HfConfigWrite, EveryStudentKindRoundTrips) {
  const ModelConfig t = Teacher();
  const std::vector<std::pair<std::string, MixerKind>> kinds = {{"mamba2", MixerKind::kMamba2},
                                                               {"llamba", MixerKind::kDiscreteMamba2},
                                                               {"mamba3", MixerKind::kMamba3},
                                                               {"gated_deltanet", MixerKind::kGatedDeltaNet}};
  for (const auto& [family, kind] : kinds) {
    ModelConfig c = Student(t, family, kind);
    ExpectRoundTrip(c, family);
    ModelConfig layer_hybrid = c;
    AddAttentionLayers(t, &layer_hybrid, {0, 3});
    if (family == "gated_deltanet") layer_hybrid.max_seq_len = t.max_seq_len;
    ExpectRoundTrip(layer_hybrid, family + " layer hybrid");
    ModelConfig scaled = layer_hybrid;
    scaled.attn.rope_scaling = {"llama3", 8.0f, 1.0f, 4.0f, 512};
    ExpectRoundTrip(scaled, family + " layer hybrid, llama3 rope");
  }
  ModelConfig pure_mamba2 = Student(t, "mamba2", MixerKind::kMamba2);  // HF Mamba2ForCausalLM: no MLP
  pure_mamba2.hidden_dim = 0;
  ExpectRoundTrip(pure_mamba2, "mamba2 without MLP");
  ModelConfig mimo = Student(t, "mamba3", MixerKind::kMamba3);
  mimo.mamba3.mimo_rank = 2, mimo.mamba3.output_norm = true, mimo.mamba3.rope_fraction = 1.0f;
  ExpectRoundTrip(mimo, "mamba3 MIMO");
  ModelConfig heads = Student(t, "llamba", MixerKind::kDiscreteMamba2);  // head-level hybrid (SPEC 6)
  heads.attn = t.attn;
  heads.attn.head_dim = heads.dm2.head_dim;
  heads.layers[1].attention_heads = {0, 5};
  heads.layers[4].attention_heads = {7};
  ExpectRoundTrip(heads, "llamba head hybrid");
  heads.layers[2].mixer = MixerKind::kAttention;
  heads.attn.head_dim = t.attn.head_dim;
  heads.dm2.head_dim = t.attn.head_dim, heads.dm2.n_v_heads = t.dim / t.attn.head_dim;
  ExpectRoundTrip(heads, "llamba layer + head hybrid");
}

TEST(HfConfigWrite, RefusesWhatConfigJsonCannotCarry) {
  const ModelConfig t = Teacher();
  auto refused = [](const ModelConfig& c, const std::string& what) {
    auto j = WriteHfConfig(c);
    EXPECT_FALSE(j.ok()) << what << " was written: " << (j.ok() ? j->dump() : "");
    if (!j.ok()) EXPECT_NE(j.status().message().find("cannot write config.json"), std::string::npos);
  };
  ModelConfig c = Student(t, "llamba", MixerKind::kDiscreteMamba2);
  ModelConfig x = c;
  x.max_seq_len = 512;  // the llamba parser has no field for it
  refused(x, "llamba max_seq_len");
  x = c;
  x.attn = t.attn;  // attention config without attention layers
  refused(x, "stray attn");
  x = c;
  x.mamba2.n_heads = 4;  // another family's fields
  refused(x, "mamba2 fields in llamba");
  x = c;
  x.layers[2].mixer = MixerKind::kMamba2;
  refused(x, "mixed recurrent kinds");
  x = Student(t, "gated_deltanet", MixerKind::kGatedDeltaNet);
  x.gdn.chunk_size = 32;
  refused(x, "gdn chunk");
  x = Student(t, "gated_deltanet", MixerKind::kGatedDeltaNet);
  x.gdn.head_v_dim = 7, x.gdn.head_k_dim = 3;  // 7/3 is not exact in f32
  refused(x, "gdn expand_v");
  x = Student(t, "mamba2", MixerKind::kMamba2);
  x.layers[1].attention_heads = {0};
  x.attn = t.attn;
  refused(x, "kept heads in mamba2");
  x = c;
  x.family = "rwkv";
  EXPECT_FALSE(WriteHfConfig(x).ok());
}

}  // namespace
}  // namespace subq
