// Shared kernels of the scalar-decay state-space mixers (Mamba-2 and Discrete Mamba-2, SPEC sections 2-3):
// the depthwise causal conv with carried state, the one-token recurrent step and the chunked SSD scan.
//
// The scan computes, per head h (group g = h / (H/G)) and token t, with S a P x N matrix:
//   S_t = exp(loga_t) S_{t-1} + X_t B_t^T ;  y_t = S_t C_t
// Mamba-2 passes X = x * dt, loga = dt * A; Discrete Mamba-2 passes X = x, loga = -softplus(A_log).
// The D skip term and the gates are the mixers' business.
//
// Layouts: all per-token inputs are rows of a larger buffer (so the mixers can pass views into their
// projection buffers without copies): X row t at x + t*ldx with head h at +h*P; B/C row t at b + t*ldbc with
// group g at +g*N; loga is [L, H]; y row t at y + t*ldy with head h at +h*P; state is [H, P, N].
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "mixers/attention.h"
#include "model/layer.h"

namespace subq {

// Per-sequence state of a Mamba-2 / Discrete Mamba-2 layer: conv state [K-1, conv_dim] (the last
// pre-conv inputs, oldest first) and SSM state [H, P, N], fp32; plus, for a head-level hybrid layer,
// the KV cache of its kept attention heads (the only part that grows with the sequence).
class SsmLayerState : public LayerState {
 public:
  SsmLayerState(int conv_rows, int conv_dim, int H, int P, int N) : conv({conv_rows, conv_dim}), ssm({H, P, N}) {}
  std::unique_ptr<LayerState> Clone() const override { return std::make_unique<SsmLayerState>(*this); }
  size_t Bytes() const override {
    return (conv.data.size() + ssm.data.size()) * sizeof(float) + (kv ? kv->Bytes() : 0);
  }
  Tensor conv;  // [K-1, conv_dim]
  Tensor ssm;   // [H, P, N]
  std::optional<KvCache> kv;  // kept attention heads only
};

struct SsdDims {
  int H = 0, P = 0, N = 0, G = 1;
};

// Depthwise causal conv over C channels of L tokens. in row t at in + t*ldin; w [C, K]; bias [C] or
// nullptr; state [K-1, C] holds the K-1 previous pre-conv inputs (oldest first) and is advanced.
// out [L, C] (row stride ldout); applies SiLU when `silu`.
void CausalConv(const float* in, int ldin, int L, int C, const float* w, const float* bias, int K, float* state,
                float* out, int ldout, bool silu);

// One token (L == 1) for all heads; advances state.
void SsdStep(const SsdDims& d, const float* x, const float* b, const float* c, const float* loga, float* state,
             float* y);

// Scratch of the chunked scan, grown on demand and reused.
struct SsdScratch {
  std::vector<float> cb, m, xw, decay;
  std::vector<double> acum;
};

// L tokens in chunks of `chunk` (the last chunk may be shorter): intra-chunk quadratic form plus
// inter-chunk state passing (SPEC section 2, steps 1-4), all products as GEMMs. Starts from `state`'s
// contents and leaves the final state in it.
void SsdChunkedScan(const SsdDims& d, int L, int chunk, const float* x, int ldx, const float* b, const float* c,
                    int ldbc, const float* loga, float* state, float* y, int ldy, SsdScratch& scratch);

}  // namespace subq
