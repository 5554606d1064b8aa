// The threading context: how many threads an op may use. It is passed down explicitly (a Workspace
// carries one), so two callers can each run their own sequences on one shared Model with their own
// thread counts. Ops parallelise with OpenMP (`#pragma omp parallel for num_threads(th.n)`): it is
// built into the compiler, its fork-join over static row/head ranges is cheap and deterministic,
// and the Highway release Debian ships (1.0.3) has no thread pool of its own.
#pragma once

namespace subq {

struct Threads {
  int n = 1;  // >= 1
  static Threads Default();  // SUBQ_THREADS if set, else the number of online CPUs
};

}  // namespace subq
