// Scan kernels of the scalar-decay state-space mixers (Mamba-2 and Discrete Mamba-2, SPEC sections 2-3):
// the one-token recurrent step and the chunked SSD scan. Written here rather than taken from a library
// because no CPU library offers the SSD scan.
//
// Per head h (group g = h / (H/G)) and token t, with S a P x N matrix:
//   S_t = exp(loga_t) S_{t-1} + X_t B_t^T ;  y_t = S_t C_t
// Mamba-2 passes X = x * dt, loga = dt * A; Discrete Mamba-2 passes X = x, loga = -softplus(A_log).
//
// Layouts: per-token inputs are rows of a larger buffer (views into the mixers' projections): X row t at
// x + t*ldx with head h at +h*P; B/C row t at b + t*ldbc with group g at +g*N; loga is [L, H]; y row t
// at y + t*ldy with head h at +h*P; state is [H, P, N].
#pragma once
#include <cstddef>

#include "util/threads.h"

namespace subq::ops {

struct SsdDims {
  int H = 0, P = 0, N = 0, G = 1;
};

// One token for all heads; advances state.
void SsdStep(const SsdDims& d, const float* x, const float* b, const float* c, const float* loga, float* state,
             float* y);

// Floats of scratch SsdChunkedScan needs for chunks of `chunk` tokens.
size_t SsdScratchFloats(const SsdDims& d, int chunk);

// L tokens in chunks of `chunk` (the last may be shorter): intra-chunk quadratic form plus inter-chunk
// state passing (SPEC section 2, steps 1-4), products as GEMMs. Starts from `state` and leaves the final
// state in it. scratch: SsdScratchFloats(d, chunk) floats, 8-byte aligned.
void SsdChunkedScan(const SsdDims& d, int L, int chunk, const float* x, int ldx, const float* b, const float* c,
                    int ldbc, const float* loga, float* state, float* y, int ldy, float* scratch);

// Threaded forms (added beside the frozen ones; same numerics). Work splits over heads (and over
// sequences x heads for the batch), with th.n threads.
void SsdStep(const Threads& th, const SsdDims& d, const float* x, const float* b, const float* c, const float* loga,
             float* state, float* y);
// One token of each of B sequences (batched decode): sequence i reads rows x + i*ldx, b/c + i*ldbc,
// loga + i*ldloga ([H] each), advances its own state states[i] ([H, P, N]) and writes y + i*ldy.
void SsdStepBatch(const Threads& th, const SsdDims& d, int B, const float* x, int ldx, const float* b, const float* c,
                  int ldbc, const float* loga, int ldloga, float* const* states, float* y, int ldy);
// scratch: SsdScratchFloats(th, d, chunk) floats (grows with th.n), 8-byte aligned.
size_t SsdScratchFloats(const Threads& th, const SsdDims& d, int chunk);
void SsdChunkedScan(const Threads& th, const SsdDims& d, int L, int chunk, const float* x, int ldx, const float* b,
                    const float* c, int ldbc, const float* loga, float* state, float* y, int ldy, float* scratch);

}  // namespace subq::ops
