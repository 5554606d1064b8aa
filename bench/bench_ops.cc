// Kernel-layer micro-benchmark: the machine's limits and how close ops/ gets to them.
//   - STREAM-like bandwidth (1 GiB arrays): triad a = b + s c and a read-only sum (the decode roofline)
//   - f32 FMA peak (register-only FMA chains) and GEMM GFLOP/s of ops::Gemm on a 2048^3 product,
//     against OpenBLAS sgemm with its own CPU detection and with OPENBLAS_CORETYPE=SkylakeX (run in
//     child processes: the core type is read when the library loads)
//   - ops::Linear GB/s per WeightType at the ~110M-model shapes, M = 1, 8, 32 (weights cycled through
//     a pool larger than the L3, so they come from DRAM as in a real decode), and prefill GFLOP/s.
// Best of --reps repetitions (the machine is shared; the best is the least disturbed run).
//
//   bench_ops [--threads 2] [--reps 5] [--json out.json] [--quick]
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/bench_ops.cc"
#ifdef SUBQ_BENCH_OPENBLAS
#include <cblas.h>
#endif
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "hwy/aligned_allocator.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/ops.h"
#include "ops/ssd.h"

HWY_BEFORE_NAMESPACE();
namespace subq::bench::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void Triad(int nt, float* a, const float* b, const float* c, size_t n, float s) {
  const hn::ScalableTag<float> d;
  const size_t V = hn::Lanes(d);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (size_t i = 0; i < n; i += V)
    hn::Stream(hn::MulAdd(hn::Set(d, s), hn::Load(d, c + i), hn::Load(d, b + i)), d, a + i);
}

float ReadSum(int nt, const float* a, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t V = hn::Lanes(d);
  float total = 0.0f;
#pragma omp parallel num_threads(nt) reduction(+ : total)
  {
    auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
#pragma omp for schedule(static)
    for (size_t i = 0; i < n; i += 4 * V) {
      s0 = hn::Add(s0, hn::Load(d, a + i));
      s1 = hn::Add(s1, hn::Load(d, a + i + V));
      s2 = hn::Add(s2, hn::Load(d, a + i + 2 * V));
      s3 = hn::Add(s3, hn::Load(d, a + i + 3 * V));
    }
    total += hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  }
  return total;
}

// 16 independent FMA chains per thread (enough to cover latency x ports); returns flops done.
double FmaPeak(int nt, int64_t iters) {
  const hn::ScalableTag<float> d;
  float sink = 0.0f;
#pragma omp parallel num_threads(nt) reduction(+ : sink)
  {
    using V = hn::Vec<decltype(d)>;
    V acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = hn::Set(d, static_cast<float>(i));
    const V m = hn::Set(d, 0.999999f), c = hn::Set(d, 1e-7f);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) acc[i] = hn::MulAdd(acc[i], m, c);
    }
    V s = acc[0];
    for (int i = 1; i < 16; ++i) s = hn::Add(s, acc[i]);
    sink += hn::GetLane(s);
  }
  return sink == 12345.0f ? 0.0 : 2.0 * 16 * hn::Lanes(d) * static_cast<double>(iters) * nt;
}

int64_t Target() { return HWY_TARGET; }

}  // namespace subq::bench::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ops/test_util.h"

namespace subq::bench {
HWY_EXPORT(Triad);
HWY_EXPORT(ReadSum);
HWY_EXPORT(FmaPeak);
HWY_EXPORT(Target);

using Clock = std::chrono::steady_clock;

// --cpu-clock: time on this process's CPU clock instead of the wall clock. With --threads 1 on a
// shared, oversubscribed machine that leaves out the time the thread waited for a core (kernel A/B
// comparisons); wall time is the figure to report.
bool g_cpu_clock = false;

double Now() {
  if (!g_cpu_clock) return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double Seconds(const std::function<void()>& f) {
  const double t0 = Now();
  f();
  return Now() - t0;
}
double Best(int reps, const std::function<void()>& f) {
  f();  // warm-up
  double best = 1e30;
  for (int r = 0; r < reps; ++r) best = std::min(best, Seconds(f));
  return best;
}

#ifdef SUBQ_BENCH_OPENBLAS
// OpenBLAS sgemm 2048^3 GFLOP/s (in this process; the parent sets OPENBLAS_CORETYPE when asked).
double OpenBlasGflops(int nt, int reps, int n) {
  openblas_set_num_threads(nt);
  std::vector<float> a = ops::testing::Random(size_t(n) * n, 1), b = ops::testing::Random(size_t(n) * n, 2),
                     c(size_t(n) * n);
  const double s = Best(reps, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  });
  return 2.0 * n * n * n / s * 1e-9;
}

#else
double OpenBlasGflops(int, int, int) { return 0.0; }  // built without OpenBLAS
#endif

double ChildOpenBlas(const char* self, const std::string& env, int nt, int reps) {
  const std::string cmd = env + " '" + std::string(self) + "' --openblas-child --threads " + std::to_string(nt) +
                          " --reps " + std::to_string(reps);
  FILE* p = popen(cmd.c_str(), "r");
  double g = 0.0;
  if (p == nullptr || fscanf(p, "%lf", &g) != 1) g = 0.0;
  if (p != nullptr) pclose(p);
  return g;
}

int Main(int argc, char** argv) {
  CLI::App app{"subq kernel micro-benchmark"};
  int nt = 2, reps = 5;
  std::string json_path;
  bool quick = false, child = false;
  int pool_mib = 640;
  app.add_option("--threads", nt);
  app.add_option("--reps", reps);
  app.add_option("--json", json_path);
  app.add_flag("--quick", quick, "smaller arrays and fewer shapes (a smoke run)");
  app.add_option("--pool-mib", pool_mib,
                 "weights cycled per shape; > L3 for DRAM figures, small for in-cache kernel speed");
  std::string only;
  app.add_option("--only", only, "comma list of sections: bw,gemm,ssd,linear (default all)");
  app.add_flag("--openblas-child", child)->group("");
  app.add_flag("--cpu-clock", g_cpu_clock, "time on the process CPU clock (A/B runs with --threads 1)");
  CLI11_PARSE(app, argc, argv);
  const int gemm_n = quick ? 1024 : 2048;
  if (child) {
    std::printf("%.3f\n", OpenBlasGflops(nt, reps, gemm_n));
    return 0;
  }
  const Threads th{nt};
  nlohmann::json out;
  out["threads"] = nt;
  out["target"] = hwy::TargetName(HWY_DYNAMIC_DISPATCH(Target)());

  auto want = [&](const char* sec) { return only.empty() || only.find(sec) != std::string::npos; };
  double read = 0.0, peak = 0.0;
  volatile float sink = 0.0f;
  if (want("bw")) {
    // ---- bandwidth ----
    const size_t n = (quick ? (size_t(256) << 20) : (size_t(1) << 30)) / 4;  // floats per array
    auto a = hwy::AllocateAligned<float>(n), b = hwy::AllocateAligned<float>(n), c = hwy::AllocateAligned<float>(n);
    std::fill(b.get(), b.get() + n, 1.0f);
    std::fill(c.get(), c.get() + n, 2.0f);
    std::fill(a.get(), a.get() + n, 0.0f);
    const double triad =
        3.0 * n * 4 / Best(reps, [&] { HWY_DYNAMIC_DISPATCH(Triad)
                                       (nt, a.get(), b.get(), c.get(), n, 3.0f); }) * 1e-9;
    read = double(n) * 4 / Best(reps, [&] { sink = sink + HWY_DYNAMIC_DISPATCH(ReadSum)(nt, b.get(), n); }) * 1e-9;
    a.reset();
    c.reset();
    std::printf("target %s, %d threads\n", hwy::TargetName(HWY_DYNAMIC_DISPATCH(Target)()), nt);
    std::printf("bandwidth: triad %.1f GB/s, read-only %.1f GB/s (%zu MiB arrays)\n", triad, read, n * 4 >> 20);
    out["triad_gbs"] = triad;
    out["read_gbs"] = read;
  }
  if (want("gemm")) {
    // ---- compute ----
    const int64_t it = 20000000;
    peak = HWY_DYNAMIC_DISPATCH(FmaPeak)(nt, it) /
           Best(reps, [&] { sink = sink + float(HWY_DYNAMIC_DISPATCH(FmaPeak)(nt, it)); }) * 1e-9;
    std::vector<float> ga = ops::testing::Random(size_t(gemm_n) * gemm_n, 1),
                       gb = ops::testing::Random(size_t(gemm_n) * gemm_n, 2), gc(size_t(gemm_n) * gemm_n);
    const double ours = 2.0 * gemm_n * gemm_n * gemm_n /
                        Best(reps,
                             [&] {
                               ops::Gemm(th, false, true, gemm_n, gemm_n, gemm_n, 1.0f, ga.data(), gemm_n, gb.data(),
                                         gemm_n, 0.0f, gc.data(), gemm_n);
                             }) *
                        1e-9;
    const double blas = ChildOpenBlas(argv[0], "", nt, reps);
    const double blas_skx = ChildOpenBlas(argv[0], "OPENBLAS_CORETYPE=SkylakeX", nt, reps);
    std::printf("f32 FMA peak %.1f GFLOP/s\n", peak);
    std::printf("GEMM %d^3 (A B^T): ours %.1f GFLOP/s (%.0f%% of peak), OpenBLAS %.1f, OpenBLAS SkylakeX %.1f\n",
                gemm_n, ours, 100 * ours / peak, blas, blas_skx);
    out["fma_peak_gflops"] = peak;
    out["gemm"] = {
        {"n", gemm_n}, {"ours_gflops", ours}, {"openblas_gflops", blas}, {"openblas_skylakex_gflops", blas_skx}};
  }
  if (want("ssd")) {
    // ---- SSD chunked scan: one Mamba-2-130m layer (H 24, P 64, N 128, G 1), continuing a state ----
    const ops::SsdDims d{24, 64, 128, 1};
    const int L = quick ? 512 : 2048;
    const int ldx = d.H * d.P, ldbc = d.G * d.N;
    std::vector<float> x = ops::testing::Random(size_t(L) * ldx, 1), b = ops::testing::Random(size_t(L) * ldbc, 2),
                       c = ops::testing::Random(size_t(L) * ldbc, 3),
                       loga = ops::testing::Random(size_t(L) * d.H, 4, -0.6f, -0.001f),
                       state0 = ops::testing::Random(size_t(d.H) * d.P * d.N, 5), state, y(size_t(L) * ldx);
    std::printf("\nSSD chunked scan, H %d P %d N %d G %d, L %d (per layer)\n", d.H, d.P, d.N, d.G, L);
    for (int chunk : {32, 64, 128, 256}) {
      std::vector<float> scratch(ops::SsdScratchFloats(th, d, chunk) + 16);
      const double sec = Best(reps, [&] {
        state = state0;
        ops::SsdChunkedScan(th, d, L, chunk, x.data(), ldx, b.data(), c.data(), ldbc, loga.data(), state.data(), y.data(),
                       ldx, scratch.data());
      });
      // FLOPs of the recurrence's useful work: state update and output, 2 x 2 P N per head and token.
      const double gf = 4.0 * d.H * d.P * d.N * L / sec * 1e-9;
      std::printf("chunk %3d: %8.2f ms, %8.0f tok/s, %6.1f GFLOP/s of the recurrence\n", chunk, sec * 1e3, L / sec, gf);
      out["ssd"].push_back({{"chunk", chunk}, {"L", L}, {"ms", sec * 1e3}, {"recurrence_gflops", gf}});
    }
  }
  if (!want("linear")) return 0;

  // ---- Linear ----
  struct Shape {
    int N, K;
  };
  const std::vector<Shape> shapes =
      quick ? std::vector<Shape>{{2048, 768}} : std::vector<Shape>{{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}};
  const ops::WeightType types[] = {ops::WeightType::kF32, ops::WeightType::kF16, ops::WeightType::kBF16,
                                   ops::WeightType::kQ8, ops::WeightType::kQ4};
  const size_t pool_bytes = size_t(pool_mib) << 20;  // default > L3 (260 MiB here)
  std::printf("\nLinear decode, GB/s of weights read (%% of read-only bandwidth); prefill M=512 GFLOP/s\n");
  std::printf("%-6s %-11s %16s %16s %16s %12s\n", "type", "N x K", "M=1", "M=8", "M=32", "M=512");
  for (ops::WeightType t : types) {
    for (const Shape& s : shapes) {
      const size_t one = ops::testing::MakeWeight(t, 1, s.K, 0).w.Bytes() * s.N;
      const int copies = static_cast<int>(std::max<size_t>(1, pool_bytes / one));
      std::vector<ops::testing::OwnedWeight> pool;
      pool.push_back(ops::testing::MakeWeight(t, s.N, s.K, 3));
      for (int i = 1; i < copies; ++i) pool.push_back(pool[0]);  // copies: distinct memory, same values
      for (auto& p : pool) p.w.data = p.bytes.data(), p.w.scales = p.scales.empty() ? nullptr : p.scales.data();
      nlohmann::json row = {{"type", ops::WeightTypeName(t)}, {"N", s.N}, {"K", s.K}, {"bytes", one}};
      std::printf("%-6s %5dx%-5d", ops::WeightTypeName(t), s.N, s.K);
      for (int M : {1, 8, 32, 512}) {
        std::vector<float> x = ops::testing::Random(size_t(M) * s.K, 4), y(size_t(M) * s.N);
        const int calls = M == 512 ? 1 : copies;
        const double sec = Best(reps,
                                [&] {
                                  for (int i = 0; i < calls; ++i) ops::Linear(th, x.data(), M, pool[i].w, y.data());
                                }) /
                           calls;
        if (M == 512) {
          const double gf = 2.0 * M * s.N * s.K / sec * 1e-9;
          std::printf(" %7.1f (%3.0f%%)", gf, 100 * gf / peak);
          row["prefill512_gflops"] = gf;
        } else {
          const double gbs = one / sec * 1e-9;
          std::printf(" %7.1f (%4.0f%%)", gbs, 100 * gbs / read);
          row["M" + std::to_string(M) + "_gbs"] = gbs;
          row["M" + std::to_string(M) + "_us"] = sec * 1e6;
        }
        std::fflush(stdout);
      }
      std::printf("\n");
      out["linear"].push_back(row);
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}

}  // namespace subq::bench

int main(int argc, char** argv) { return subq::bench::Main(argc, argv); }
#endif
