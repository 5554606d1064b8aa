// Prefill and decode throughput of ~100M-parameter Mamba-2 and Llamba (Discrete Mamba-2) models with
// random weights built in memory (no files): chunked prefill at 1k..16k tokens, token-by-token stepping
// at 4096 tokens, the linearity of prefill time in the length, and chunked-vs-step speed at 4096.
//
// On a small machine the default runs a subset of each model's layers (the dims stay those of the
// ~100M model; per-layer cost dominates, so tokens/s of the full model is about measured * run/full
// layers, which the output also prints). --full runs every layer.
//
//   bench_prefill [--json out.json] [--full] [--mamba2-layers N] [--llamba-layers N]
//                 [--lengths 1024,2048,...] [--step-tokens 4096]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "mixers/mixer_test_util.h"
#include "model/model.h"

namespace subq {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kVocab = 8192;

struct Spec {
  std::string name;
  ModelConfig cfg;  // full model (n_layers = all layers)
  int64_t params = 0;
};

// mamba2-style: d 768, 24 layers, expand 2, head_dim 64 (24 heads), state 128, 1 group, chunk 256; no MLP.
Spec Mamba2Spec() {
  Spec s{"mamba2", {}, 0};
  ModelConfig& c = s.cfg;
  c.family = "mamba2", c.vocab_size = kVocab, c.dim = 768, c.hidden_dim = 0, c.n_layers = 24;
  c.tie_embeddings = true;
  c.mamba2 = Mamba2Config{};
  c.mamba2.n_heads = 24, c.mamba2.head_dim = 64, c.mamba2.state_size = 128, c.mamba2.n_groups = 1;
  c.mamba2.conv_kernel = 4, c.mamba2.chunk_size = 256;
  const int64_t E = 1536, rows = 2 * E + 2 * 128 + 24;
  s.params = int64_t{kVocab} * 768 + 24 * (rows * 768 + E * 768 + (E + 256) * 4 + E + 3 * 24 + 768) + 768;
  return s;
}

// Llamba-style: d 768, 12 layers, 12 v/qk heads x 64, d_state 64, chunk 128, SwiGLU 2048.
Spec LlambaSpec() {
  Spec s{"llamba", {}, 0};
  ModelConfig& c = s.cfg;
  c.family = "llamba", c.vocab_size = kVocab, c.dim = 768, c.hidden_dim = 2048, c.n_layers = 12;
  c.tie_embeddings = true;
  c.dm2.d_state = 64, c.dm2.n_qk_heads = 12, c.dm2.n_v_heads = 12, c.dm2.head_dim = 64;
  c.dm2.conv_kernel = 4, c.dm2.chunk_size = 128, c.dm2.conv_bias = true;
  const int64_t E = 768, cd = E + 2 * 12 * 64, rows = cd + E + 12;
  s.params = int64_t{kVocab} * 768 +
             12 * (rows * 768 + E + cd * 5 + 12 + 768 * E + 3 * 768 * 2048 + 2 * 768) + 768;
  return s;
}

// Random weights for the first `layers` layers of the model, as a checkpoint.
Checkpoint BuildCheckpoint(const Spec& s, int layers, unsigned seed) {
  Checkpoint ck;
  ck.path = "in-memory " + s.name;
  ck.format = "hf";
  ck.config = s.cfg;
  ck.config.n_layers = layers;
  const MixerKind kind = s.name == "mamba2" ? MixerKind::kMamba2 : MixerKind::kDiscreteMamba2;
  ck.config.layers.assign(layers, LayerConfig{kind, {}});
  std::mt19937 rng(seed);
  const ModelConfig& c = ck.config;
  const int64_t D = c.dim, F = c.hidden_dim;
  testing::NamedTensors t;
  const std::string embed = s.name == "mamba2" ? "backbone.embeddings.weight" : "backbone.embedding.weight";
  t.push_back({embed, testing::RandomTensor({c.vocab_size, D}, rng, 0.02f)});
  t.push_back({s.name == "mamba2" ? "backbone.norm_f.weight" : "backbone.final_layernorm.weight",
               testing::RandomTensor({D}, rng, 0.0f, 1.0f)});
  for (int l = 0; l < layers; ++l) {
    const std::string p = fmt::format("backbone.layers.{}.", l);
    auto mix = kind == MixerKind::kMamba2 ? testing::RandomMamba2Tensors(c, rng, p + "mixer.")
                                          : testing::RandomDiscreteMamba2Tensors(c, l, rng, p + "mixer.");
    for (auto& e : mix) t.push_back(std::move(e));
    if (kind == MixerKind::kMamba2) {
      t.push_back({p + "norm.weight", testing::RandomTensor({D}, rng, 0.0f, 1.0f)});
    } else {
      t.push_back({p + "input_layernorm.weight", testing::RandomTensor({D}, rng, 0.0f, 1.0f)});
      t.push_back({p + "post_attention_layernorm.weight", testing::RandomTensor({D}, rng, 0.0f, 1.0f)});
      t.push_back({p + "mlp.gate_proj.weight", testing::RandomTensor({F, D}, rng, 0.03f)});
      t.push_back({p + "mlp.up_proj.weight", testing::RandomTensor({F, D}, rng, 0.03f)});
      t.push_back({p + "mlp.down_proj.weight", testing::RandomTensor({D, F}, rng, 0.02f)});
    }
  }
  ck.tensors = testing::StoreFrom(t);
  return ck;
}

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

nlohmann::json RunOne(const Spec& s, int layers, const std::vector<int>& lengths, int step_tokens) {
  Checkpoint ck = BuildCheckpoint(s, layers, 42);
  auto mr = Model::FromCheckpoint(ck);
  if (!mr.ok()) {
    fmt::print(stderr, "{}: {}\n", s.name, mr.status().message());
    std::exit(1);
  }
  Model& m = *mr.value();
  Workspace ws(m, 2048);
  const int max_len = *std::max_element(lengths.begin(), lengths.end());
  std::vector<int> ids(std::max(max_len, step_tokens));
  std::mt19937 rng(7);
  for (auto& v : ids) v = static_cast<int>(rng() % kVocab);
  std::vector<float> logits(kVocab);
  {  // warm-up (BLAS threads, page faults)
    SequenceState seq = m.NewSequence().value();
    (void)m.Forward(ids.data(), 256, seq, ws, logits.data());
  }
  nlohmann::json r;
  r["model"] = s.name;
  r["params_full_model"] = s.params;
  r["layers_full_model"] = s.cfg.n_layers;
  r["layers_run"] = layers;
  std::map<int, double> t_prefill;
  for (int L : lengths) {
    SequenceState seq = m.NewSequence().value();
    auto t0 = Clock::now();
    Status st = m.Forward(ids.data(), L, seq, ws, logits.data());
    auto t1 = Clock::now();
    if (!st.ok()) fmt::print(stderr, "{}\n", st.message());
    t_prefill[L] = Seconds(t0, t1);
    r["prefill"].push_back({{"tokens", L}, {"seconds", t_prefill[L]}, {"tokens_per_s", L / t_prefill[L]}});
    fmt::print(stderr, "  {} prefill {:>6} tokens: {:8.3f} s  {:9.1f} tok/s\n", s.name, L, t_prefill[L],
               L / t_prefill[L]);
  }
  if (t_prefill.count(1024) && t_prefill.count(16384))
    r["linearity_16k_vs_1k"] = t_prefill[16384] / t_prefill[1024] / 16.0;
  if (step_tokens > 0) {
    SequenceState seq = m.NewSequence().value();
    auto t0 = Clock::now();
    for (int t = 0; t < step_tokens; ++t) (void)m.Forward(ids.data() + t, 1, seq, ws, logits.data());
    const double secs = Seconds(t0, Clock::now());
    r["step"] = {{"tokens", step_tokens}, {"seconds", secs}, {"tokens_per_s", step_tokens / secs}};
    fmt::print(stderr, "  {} step    {:>6} tokens: {:8.3f} s  {:9.1f} tok/s\n", s.name, step_tokens, secs,
               step_tokens / secs);
    if (t_prefill.count(step_tokens)) r["chunked_vs_step_at_" + std::to_string(step_tokens)] = secs / t_prefill[step_tokens];
  }
  return r;
}

}  // namespace
}  // namespace subq

int main(int argc, char** argv) {
  using namespace subq;
  CLI::App app{"Prefill/decode throughput of ~100M Mamba-2 and Llamba models (random weights)"};
  std::string json_out, lengths_s = "1024,2048,4096,8192,16384";
  bool full = false;
  int m2_layers = 4, ll_layers = 2, step_tokens = 4096;
  app.add_option("--json", json_out, "write results as JSON");
  app.add_flag("--full", full, "run every layer of both models");
  app.add_option("--mamba2-layers", m2_layers, "layers of the 24-layer Mamba-2 model to run");
  app.add_option("--llamba-layers", ll_layers, "layers of the 12-layer Llamba model to run");
  app.add_option("--lengths", lengths_s, "prefill lengths, comma-separated");
  app.add_option("--step-tokens", step_tokens, "tokens fed one at a time (0: skip)");
  CLI11_PARSE(app, argc, argv);
  std::vector<int> lengths;
  std::stringstream ss(lengths_s);
  for (std::string tok; std::getline(ss, tok, ',');) lengths.push_back(std::stoi(tok));

  nlohmann::json all;
  std::vector<std::pair<Spec, int>> runs = {{Mamba2Spec(), full ? 24 : m2_layers}, {LlambaSpec(), full ? 12 : ll_layers}};
  for (auto& [spec, layers] : runs) {
    fmt::print(stderr, "{}: ~{:.0f}M parameters in {} layers; running {} of them{}\n", spec.name, spec.params / 1e6,
               spec.cfg.n_layers, layers, layers < spec.cfg.n_layers ? " (subset: see --full)" : "");
    all["models"].push_back(RunOne(spec, layers, lengths, step_tokens));
  }

  fmt::print("\n{:<8} {:>7} {:>10} {:>12} {:>14}\n", "model", "layers", "tokens", "tok/s", "tok/s full*");
  for (const auto& r : all["models"]) {
    const double scale = r["layers_run"].get<double>() / r["layers_full_model"].get<double>();
    for (const auto& p : r["prefill"])
      fmt::print("{:<8} {:>7} {:>10} {:>12.1f} {:>14.1f}\n", r["model"].get<std::string>(), r["layers_run"].get<int>(),
                 p["tokens"].get<int>(), p["tokens_per_s"].get<double>(), p["tokens_per_s"].get<double>() * scale);
    if (r.contains("step"))
      fmt::print("{:<8} {:>7} {:>10} {:>12.1f} {:>14.1f}\n", r["model"].get<std::string>() , r["layers_run"].get<int>(),
                 fmt::format("step {}", r["step"]["tokens"].get<int>()), r["step"]["tokens_per_s"].get<double>(),
                 r["step"]["tokens_per_s"].get<double>() * scale);
    if (r.contains("linearity_16k_vs_1k"))
      fmt::print("  linearity time(16k)/time(1k)/16 = {:.3f} (1 = linear)\n", r["linearity_16k_vs_1k"].get<double>());
    const std::string key = "chunked_vs_step_at_" + std::to_string(step_tokens);
    if (r.contains(key)) fmt::print("  chunked prefill is {:.1f}x faster than stepping at {} tokens\n", r[key].get<double>(), step_tokens);
  }
  fmt::print("* tok/s full: scaled to all layers (embedding/LM head cost ignored)\n");
  if (!json_out.empty()) {
    std::ofstream(json_out) << all.dump(2) << "\n";
    fmt::print(stderr, "wrote {}\n", json_out);
  }
  return 0;
}
