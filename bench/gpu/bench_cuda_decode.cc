// GPU decode benchmark (issue 8): the card's copy bandwidth, the SSD one-token state update against it, and
// whole-model greedy decode throughput of a Llamba-1B-shaped student vs a Llama-3.2-1B-shaped teacher
// (random bf16 weights) over batch sizes and context lengths, through CudaRunner's graph-captured decode.
// Contexts are set without a prefill (KV caches and states filled with random values): a decode step's cost
// depends only on how many keys it reads. Usage: bench_cuda_decode [--batches 1,8,64,256]
// [--contexts 128,8192] [--steps 32] [--json FILE]
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "gpu_bench_util.h"
#include "engine_cuda/cuda_runner.h"

using namespace subq;
using namespace subq::cuda;
using subq::cuda::bench::CopyBandwidth;
using subq::cuda::bench::ParseList;

namespace {

ModelConfig Llama1B() {
  ModelConfig c;
  c.family = "llama", c.vocab_size = 128256, c.dim = 2048, c.hidden_dim = 8192, c.n_layers = 16;
  c.max_seq_len = 131072, c.norm_eps = 1e-5f, c.tie_embeddings = true;
  c.attn.n_heads = 32, c.attn.n_kv_heads = 8, c.attn.head_dim = 64, c.attn.rope_theta = 500000.0f;
  c.attn.rope_scaling = {"llama3", 32.0f, 1.0f, 4.0f, 8192};
  c.layers.assign(c.n_layers, LayerConfig{MixerKind::kAttention, {}});
  return c;
}

ModelConfig Llamba1B() {
  ModelConfig c = Llama1B();
  c.family = "llamba";
  c.dm2.d_state = 64, c.dm2.n_qk_heads = 32, c.dm2.n_v_heads = 32, c.dm2.head_dim = 64, c.dm2.conv_kernel = 4;
  c.layers.assign(c.n_layers, LayerConfig{MixerKind::kDiscreteMamba2, {}});
  return c;
}

// Microseconds per SsdStep call over `rows` sequences: the mean over 20 replays (after warm-up) of a graph
// of 100 calls.
double SsdStepMicros(int rows, int H, int P, int N, bool mamba2, double* bytes) {
  // Calls rotate over `sets` disjoint sets of `rows` states, 512 MiB in all (8x the L2), so that no call
  // finds its states in the cache.
  const size_t per = size_t(H) * P * N;
  const int sets = std::max<int>(2, static_cast<int>((size_t(512) << 20) / (size_t(rows) * per * 4)));
  float *st, *xbc, *dt, *y, *prm;
  int* slot;
  const int ldbc = H * P + 2 * N, cd = ldbc;
  SUBQ_CUDA_CHECK(cudaMalloc(&st, size_t(sets) * rows * per * 4));
  SUBQ_CUDA_CHECK(cudaMalloc(&xbc, size_t(rows) * cd * 4));
  SUBQ_CUDA_CHECK(cudaMalloc(&dt, size_t(rows) * H * 4));
  SUBQ_CUDA_CHECK(cudaMalloc(&y, size_t(rows) * H * P * 4));
  SUBQ_CUDA_CHECK(cudaMalloc(&prm, 3 * H * 4));
  SUBQ_CUDA_CHECK(cudaMalloc(&slot, size_t(sets) * rows * 4));
  std::vector<int> hs(size_t(sets) * rows);
  for (size_t i = 0; i < hs.size(); ++i) hs[i] = static_cast<int>(i);
  SUBQ_CUDA_CHECK(cudaMemcpy(slot, hs.data(), hs.size() * 4, cudaMemcpyHostToDevice));
  FillUniform(nullptr, st, size_t(sets) * rows * per, 1, -0.1f, 0.1f);
  FillUniform(nullptr, xbc, size_t(rows) * cd, 2, -1.0f, 1.0f);
  FillUniform(nullptr, dt, size_t(rows) * H, 3, -1.0f, 1.0f);
  FillUniform(nullptr, prm, 3 * H, 4, 0.5f, 1.0f);
  SsdParams p{H, P, N, 1, mamba2 ? prm : nullptr, mamba2 ? prm + H : nullptr, prm + 2 * H};
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  const int calls = std::max(100, sets);
  cudaGraph_t g;
  cudaGraphExec_t ge;
  SUBQ_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i)
    SsdStep(s, p, rows, xbc, cd, xbc + H * P, xbc + H * P + N, cd, dt, H, st, slot + size_t(i % sets) * rows, y, H * P);
  SUBQ_CUDA_CHECK(cudaStreamEndCapture(s, &g));
  SUBQ_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 3; ++i) cudaGraphLaunch(ge, s);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  const int reps = 20;
  cudaEventRecord(e0, s);
  for (int i = 0; i < reps; ++i) cudaGraphLaunch(ge, s);
  cudaEventRecord(e1, s);
  SUBQ_CUDA_CHECK(cudaEventSynchronize(e1));
  float ms;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaStreamDestroy(s);
  for (void* q : {(void*)st, (void*)xbc, (void*)dt, (void*)y, (void*)prm, (void*)slot}) cudaFree(q);
  *bytes = 2.0 * rows * per * 4;  // state read + written
  return ms * 1e3 / (reps * calls);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> batches = {1, 8, 64, 256}, contexts = {128, 8192};
  int steps = 32;
  const char* json = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batches")) batches = ParseList(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--contexts")) contexts = ParseList(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--steps")) steps = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--json")) json = argv[i + 1];
  }
  if (const std::string why = DeviceUnavailableReason(); !why.empty()) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return 1;
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  std::string out = "{\n  \"device\": \"" + std::string(prop.name) + "\",\n";
  const double bw = CopyBandwidth();
  std::printf("device %s, copy bandwidth (read+write) %.0f GB/s\n", prop.name, bw / 1e9);
  out += "  \"copy_bandwidth_GBps\": " + std::to_string(bw / 1e9) + ",\n  \"ssd_step\": [\n";
  struct Shape { const char* name; int H, P, N; bool m2; };
  bool first = true;
  for (const Shape& sh : {Shape{"llamba-1b-layer", 32, 64, 64, false}, Shape{"mamba2-2.7b-layer", 80, 64, 128, true}})
    for (int rows : {1, 64}) {
      double bytes;
      const double us = SsdStepMicros(rows, sh.H, sh.P, sh.N, sh.m2, &bytes);
      const double frac = bytes / (us * 1e-6) / bw;
      std::printf("ssd step %-18s batch %3d: %8.2f us, state traffic %.0f GB/s = %.0f%% of copy bandwidth\n", sh.name,
                  rows, us, bytes / (us * 1e-6) / 1e9, 100 * frac);
      char buf[256];
      std::snprintf(buf, sizeof(buf), "%s    {\"shape\": \"%s\", \"batch\": %d, \"us\": %.3f, \"GBps\": %.1f, \"frac_of_copy\": %.3f}",
                    first ? "" : ",\n", sh.name, rows, us, bytes / (us * 1e-6) / 1e9, frac);
      out += buf;
      first = false;
    }
  out += "\n  ],\n  \"decode\": [\n";
  size_t free0, total0;
  cudaMemGetInfo(&free0, &total0);
  first = true;
  for (const bool student : {true, false}) {
    const ModelConfig cfg = student ? Llamba1B() : Llama1B();
    std::string err;
    auto model = CudaModel::Random(cfg, 42, &err);
    if (!model) {
      std::fprintf(stderr, "%s\n", err.c_str());
      return 1;
    }
    // Largest batch whose state fits beside the weights at each context (computed from the free memory,
    // with 4 GiB left for the workspace), printed with the measurements.
    for (int ctx : contexts) {
      const double per_seq = student ? 16.0 * (3 * (2048 + 2 * 32 * 64) + 32 * 64 * 64) * 4
                                     : 2.0 * cfg.n_layers * ctx * cfg.attn.n_kv_heads * cfg.attn.head_dim * 2;
      const double fit = (double(free0) - model->WeightBytes() - 4.0 * (1 << 30)) / per_seq;
      std::printf("%-7s ctx %5d: largest batch that fits ~%.0f\n", student ? "student" : "teacher", ctx, fit);
      char buf[160];
      std::snprintf(buf, sizeof(buf), "%s    {\"model\": \"%s\", \"context\": %d, \"max_batch_fit\": %.0f}",
                    first ? "" : ",\n", student ? "llamba-1b" : "llama-3.2-1b", ctx, fit);
      out += buf, first = false;
    }
    for (int ctx : contexts)
      for (int B : batches) {
        const int cap = student ? 8 : ctx + steps + 8;
        size_t free_b, total_b;
        cudaMemGetInfo(&free_b, &total_b);
        const double kv = student ? 0.0 : 2.0 * cfg.n_layers * (B + 1.0) * cap * cfg.attn.n_kv_heads * cfg.attn.head_dim * 2;
        char buf[320];
        if (kv > 0.9 * free_b) {
          std::printf("%-7s ctx %5d batch %3d: out of memory (KV %.1f GB)\n", student ? "student" : "teacher", ctx, B, kv / 1e9);
          std::snprintf(buf, sizeof(buf), "%s    {\"model\": \"%s\", \"context\": %d, \"batch\": %d, \"oom\": true}",
                        first ? "" : ",\n", student ? "llamba-1b" : "llama-3.2-1b", ctx, B);
          out += buf, first = false;
          continue;
        }
        CudaRunner run(*model, B, cap, 16);
        run.FillStatesRandom(ctx);
        std::vector<int> slots(B), tok(B, 1), next(B);
        for (int b = 0; b < B; ++b) slots[b] = b, run.SetPosition(b, student ? 0 : ctx);
        for (int i = 0; i < 3; ++i) run.Decode(B, slots.data(), tok.data(), next.data());  // capture + warm-up
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < steps; ++i) {
          run.Decode(B, slots.data(), tok.data(), next.data());
          tok = next;
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double tps = double(B) * steps / s, ms = 1e3 * s / steps;
        const double state_mb = run.StateBytesPerSlot() / 1e6;
        // Bytes a step must read: weights once, plus each sequence's KV up to its position (or its state,
        // read and written); their time at the measured copy bandwidth is the step's floor.
        const double kv_read = student ? 0.0 : 2.0 * cfg.n_layers * B * (ctx + 1.0) * cfg.attn.n_kv_heads * cfg.attn.head_dim * 2;
        const double state_rw = student ? 2.0 * B * run.StateBytesPerSlot() : 0.0;
        const double floor_ms = 1e3 * (model->WeightBytes() + kv_read + state_rw) / bw;
        std::printf("%-7s ctx %5d batch %3d: %8.2f ms/step %10.0f tok/s (state %.1f MB/seq, memory floor %.2f ms)\n",
                    student ? "student" : "teacher", ctx, B, ms, tps, state_mb, floor_ms);
        std::snprintf(buf, sizeof(buf),
                      "%s    {\"model\": \"%s\", \"context\": %d, \"batch\": %d, \"ms_per_step\": %.3f, \"tok_per_s\": %.1f, \"state_MB_per_seq\": %.2f, \"memory_floor_ms\": %.3f}",
                      first ? "" : ",\n", student ? "llamba-1b" : "llama-3.2-1b", ctx, B, ms, tps, state_mb, floor_ms);
        out += buf, first = false;
      }
  }
  out += "\n  ]\n}\n";
  if (json != nullptr) {
    FILE* f = std::fopen(json, "w");
    if (f) std::fputs(out.c_str(), f), std::fclose(f);
  }
  return 0;
}
