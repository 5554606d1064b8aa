// AttentionCore::Run (template over how a slice's KV cache is found).
#pragma once
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops/ops.h"

namespace subq {

template <typename CacheOf>
void AttentionCore::Run(float* q, float* k, const float* v, std::span<const SeqSlice> seqs, ExecContext& ctx,
                        CacheOf cache_of, float* att) const {
  const int qd = n_heads * hd, kvd = n_kv_heads * hd, group = n_heads / n_kv_heads;
  const int S = static_cast<int>(seqs.size());
  // Rope and append: cheap, sequential.
  for (const SeqSlice& s : seqs) {
    KvCache& cache = cache_of(s);
    for (int t = 0; t < s.n; ++t) {
      const size_t r = static_cast<size_t>(s.row0 + t);
      ops::Rope(q + r * qd, n_heads, hd, s.pos + t, inv_freq.data(), interleaved);
      ops::Rope(k + r * kvd, n_kv_heads, hd, s.pos + t, inv_freq.data(), interleaved);
      std::memcpy(cache.k_at(cache.len() + t), k + r * kvd, kvd * sizeof(float));
      std::memcpy(cache.v_at(cache.len() + t), v + r * kvd, kvd * sizeof(float));
    }
  }
  const size_t per_thread = ops::AttentionScratchFloats(hd);
  float* scratch = ctx.arena->Take(per_thread * ctx.threads.n);
#pragma omp parallel for num_threads(ctx.threads.n) schedule(dynamic, 1)
  for (int job = 0; job < S * n_kv_heads; ++job) {
    const SeqSlice& s = seqs[job / n_kv_heads];
    const int kh = job % n_kv_heads;
    const KvCache& cache = cache_of(s);
    float* my = scratch;
#ifdef _OPENMP
    my += per_thread * static_cast<size_t>(omp_get_thread_num());
#endif
    const size_t r0 = static_cast<size_t>(s.row0);
    ops::AttendCausal(q + r0 * qd + kh * group * hd, qd, s.n, group, 1, hd, cache.k_at(0) + kh * hd,
                      cache.v_at(0) + kh * hd, kvd, cache.len(), att + r0 * qd + kh * group * hd, qd, my);
  }
  for (const SeqSlice& s : seqs) cache_of(s).Advance(s.n);
}

}  // namespace subq
