// Llama engine baseline: prefill tokens/s (prompts of 128 and 512 tokens) and decode tokens/s
// (256 tokens, batch 1) for stories260K and a random-weight Llama of ~100M parameters.
// Usage: bench_llama [--json FILE] [--data DIR] [--reps N]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/random_tensors.h"
#include "model/model.h"

using namespace subq;

namespace {

void AddRandom(TensorStore& st, const std::string& name, std::vector<int64_t> shape, float scale, std::mt19937& rng) {
  // norms at 1, matrices N(0, scale)
  (void)AddRandomTensor(st, name, shape, shape.size() == 1 ? 0.0f : scale, rng, shape.size() == 1 ? 1.0f : 0.0f);
}

// ~110M parameters: dim 768, 12 layers, 12 heads (4 kv), hidden 2048, vocab 32000, untied.
std::unique_ptr<Checkpoint> RandomLlama() {
  auto ck = std::make_unique<Checkpoint>();
  ModelConfig& c = ck->config;
  c.family = "llama";
  c.vocab_size = 32000, c.dim = 768, c.hidden_dim = 2048, c.n_layers = 12, c.max_seq_len = 2048;
  c.tie_embeddings = false;
  c.attn = {12, 4, 64, 10000.0f, false, {}};
  c.layers.assign(c.n_layers, LayerConfig{});
  std::mt19937 rng(0);
  TensorStore& st = ck->tensors;
  const int64_t D = c.dim, F = c.hidden_dim, V = c.vocab_size, kv = 4 * 64;
  const float s = 0.02f;
  AddRandom(st, "model.embed_tokens.weight", {V, D}, s, rng);
  AddRandom(st, "lm_head.weight", {V, D}, s, rng);
  AddRandom(st, "model.norm.weight", {D}, s, rng);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    AddRandom(st, p + "input_layernorm.weight", {D}, s, rng);
    AddRandom(st, p + "post_attention_layernorm.weight", {D}, s, rng);
    AddRandom(st, p + "self_attn.q_proj.weight", {D, D}, s, rng);
    AddRandom(st, p + "self_attn.k_proj.weight", {kv, D}, s, rng);
    AddRandom(st, p + "self_attn.v_proj.weight", {kv, D}, s, rng);
    AddRandom(st, p + "self_attn.o_proj.weight", {D, D}, s, rng);
    AddRandom(st, p + "mlp.gate_proj.weight", {F, D}, s, rng);
    AddRandom(st, p + "mlp.up_proj.weight", {F, D}, s, rng);
    AddRandom(st, p + "mlp.down_proj.weight", {D, F}, s, rng);
  }
  ck->path = "random-llama-110M";
  ck->format = "random";
  return ck;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

nlohmann::json Bench(const std::string& name, Model& m, int reps) {
  Workspace ws(m, 512);
  const int V = m.config().vocab_size;
  std::vector<float> logits(V);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> tok(3, V - 1);
  nlohmann::json r = {{"model", name}};
  size_t params = 0;
  for (int len : {128, 512}) {
    std::vector<int> ids(len);
    for (int& t : ids) t = tok(rng);
    double best = 1e30;
    for (int i = 0; i < reps; ++i) {
      SequenceState seq = m.NewSequence().value();
      auto t0 = std::chrono::steady_clock::now();
      (void)m.Forward(ids.data(), len, seq, ws, logits.data());
      best = std::min(best, Seconds(t0));
    }
    r["prefill_" + std::to_string(len) + "_tok_s"] = len / best;
  }
  const int n_decode = 256;
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    SequenceState seq = m.NewSequence().value();
    int t = 1;
    auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < n_decode; ++k) {
      (void)m.Forward(&t, 1, seq, ws, logits.data());
      t = tok(rng);
    }
    best = std::min(best, Seconds(t0));
  }
  r["decode_256_tok_s"] = n_decode / best;
  (void)params;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Llama engine baseline: prefill and decode tokens/s"};
  std::string json_path, data = "../shared/data";
  int reps = 3;
  app.add_option("--json", json_path, "write results as JSON here");
  app.add_option("--data", data, "data folder (default ../shared/data or $SUBQ_DATA)");
  app.add_option("--reps", reps, "repetitions (best is reported)");
  CLI11_PARSE(app, argc, argv);
  if (const char* d = std::getenv("SUBQ_DATA")) data = d;

  nlohmann::json results = nlohmann::json::array();
  auto ck = ReadCheckpoint(data + "/stories260K/stories260K.bin");
  if (!ck.ok()) {
    std::fprintf(stderr, "bench_llama: %s\n", ck.status().message().c_str());
    return 1;
  }
  auto small = Model::FromCheckpoint(*ck);
  if (!small.ok()) return 1;
  results.push_back(Bench("stories260K", **small, reps));
  auto big_ck = RandomLlama();
  auto big = Model::FromCheckpoint(*big_ck);
  if (!big.ok()) {
    std::fprintf(stderr, "bench_llama: %s\n", big.status().message().c_str());
    return 1;
  }
  results.push_back(Bench("random-llama-110M", **big, std::max(1, reps - 1)));

  std::printf("%-20s %14s %14s %14s\n", "model", "prefill128 t/s", "prefill512 t/s", "decode t/s");
  for (const auto& r : results)
    std::printf("%-20s %14.1f %14.1f %14.1f\n", r["model"].get<std::string>().c_str(),
                r["prefill_128_tok_s"].get<double>(), r["prefill_512_tok_s"].get<double>(),
                r["decode_256_tok_s"].get<double>());
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << nlohmann::json{{"bench", "llama"}, {"results", results}}.dump(2) << "\n";
  }
  return 0;
}
