// subq bench: prefill / decode / batched-decode throughput, state bytes and peak RSS of one or more
// models (eval/bench.h), as a table, JSON and a PNG plot.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "apps/commands.h"
#include "apps/common.h"
#include "eval/bench.h"
#ifdef SUBQ_HAVE_CUDA
#include "apps/cuda_device.h"
#endif

namespace subq {
namespace {

struct BenchCliOptions {
  std::vector<std::string> models;
  std::string device = "cpu", prompt_lengths = "128,512,4096,16384", batches = "1,8,32,128", json, png;
  double memory_limit_mb = 0;
  BenchOptions bench;
};

// "128,512" -> {128, 512}; every item a positive integer (at least `min`).
Result<std::vector<int>> ParseList(const std::string& flag, const std::string& s, int min) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int x = 0;
    try {
      x = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || x < min)
      return Errorf("{}: '{}' is not an integer >= {} (expected a comma list such as 128,512)", flag, item, min);
    v.push_back(x);
  }
  if (v.empty()) return Errorf("{}: empty list", flag);
  return v;
}

int RunBench(BenchCliOptions& o) {
  if (Status d = RequireDevice(o.device); !d.ok()) return ReportError(d);
  auto pl = ParseList("--prompt-lengths", o.prompt_lengths, 1);
  if (!pl.ok()) return ReportError(pl.status());
  auto bs = ParseList("--batch", o.batches, 1);
  if (!bs.ok()) return ReportError(bs.status());
  o.bench.prompt_lengths = *pl, o.bench.batches = *bs;
  o.bench.memory_limit = static_cast<size_t>(o.memory_limit_mb * 1e6);
  o.bench.progress = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
#ifdef SUBQ_HAVE_CUDA
  if (o.device == "cuda") o.bench.device = CudaDeviceName();
#endif
  std::vector<ModelBench> results;
  for (const std::string& path : o.models) {
    std::fprintf(stderr, "bench: loading %s\n", path.c_str());
    auto lm = LoadModel(path, "", /*load_tokenizer=*/false);
    if (!lm.ok()) return ReportError(lm.status());
    auto bench = [&]() -> Result<ModelBench> {
#ifdef SUBQ_HAVE_CUDA
      if (o.device == "cuda") {
        SUBQ_ASSIGN_OR_RETURN(auto backend, CudaBenchBackend(*lm, o.bench.max_tokens, o.bench.memory_limit));
        return BenchModel(*backend, path, o.bench);
      }
#endif
      return BenchModel(*lm->model, path, o.bench);
    };
    auto r = bench();
    if (!r.ok()) return ReportError(r.status());
    std::printf("%s\n", BenchTable(*r, o.bench).c_str());
    std::fflush(stdout);
    results.push_back(std::move(*r));
  }
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << BenchJson(results, o.bench).dump(2) << "\n";
    if (!f) return ReportError(Errorf("cannot write {}", o.json));
    std::fprintf(stderr, "bench: wrote %s\n", o.json.c_str());
  }
  if (!o.png.empty()) {
    Status st = WriteBenchPng(results, o.bench, o.png);
    if (!st.ok()) return ReportError(st);
    std::fprintf(stderr, "bench: wrote %s\n", o.png.c_str());
  }
  return 0;
}

}  // namespace

void AddBenchCommand(CLI::App& app) {
  auto o = std::make_shared<BenchCliOptions>();
  o->bench.threads = Threads::Default().n;
  CLI::App* c = app.add_subcommand("bench", "Throughput: prefill, decode vs context, batched decode, state bytes");
  c->add_option("--model", o->models, "model path (repeat to compare models side by side)")->required();
  c->add_option("--device", o->device, "cpu or cuda (the GPU: prefill, decode and batched decode on the device)");
  c->add_option("--threads", o->bench.threads, "threads (default SUBQ_THREADS or all CPUs)")
      ->check(CLI::PositiveNumber);
  c->add_option("--prompt-lengths", o->prompt_lengths, "prompt lengths: prefill, then decode at that context");
  c->add_option("--batch", o->batches, "batch sizes of the batched decode");
  c->add_option("--gen", o->bench.gen, "decode steps per measurement")->check(CLI::PositiveNumber);
  c->add_option("--batch-context", o->bench.batch_context, "context each sequence holds before the batched decode")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--max-tokens", o->bench.max_tokens, "rows per forward call (prompt piece length)")
      ->check(CLI::PositiveNumber);
  c->add_option("--memory-limit-mb", o->memory_limit_mb, "memory a cell may allocate (default: MemAvailable)")
      ->check(CLI::PositiveNumber);
  c->add_option("--json", o->json, "write every number (and the machine) to this JSON file");
  c->add_option("--png", o->png, "write the plot (decode vs context, aggregate vs batch) to this PNG");
  c->callback([o] { ExitCode() = RunBench(*o); });
}

}  // namespace subq
