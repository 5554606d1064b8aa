// Oryx multi-mixer layer (SPEC section 6, "Oryx"): one set of attention projections serves two modes.
//
// Shared (the teacher's attention, copied): q_proj [H*hd, d], k_proj [KV*hd, d], v_proj [KV*hd, d],
// o_proj [d, H*hd], RoPE as the teacher. Recurrent extras under the same prefix (< 10% of the layer):
//   oryx_a_proj.weight [H, d], oryx_dt_bias [H], oryx_A_log [H]   per-head decay (both recurrences)
//   oryx_D [H]                                                    skip term (ssd)
//   oryx_b_proj.weight [H, d]                                     write strength beta (gdn)
//   oryx_norm.weight [hd]                                         per-head output RMSNorm (recurrent mode)
//
// Per token t (head h reads kv head h / (H/KV)): q_t, k_t rotated by RoPE at t, v_t.
//   attention mode:  o_t = softmax(q_t . K^T / sqrt(hd)) V over the KV cache     (the teacher's attention)
//   recurrent mode:  q^ = L2norm(q_t) / sqrt(hd), k^ = L2norm(k_t)  (RoPE before the norm: relative phase
//                    kept), dt = softplus(a_proj u + dt_bias), log a = -exp(A_log) dt
//     ssd:  S = a S + (dt v) k^T ;  y = S q^ + D v                      (Mamba-2 SSD with B = k^, C = q^, x = v)
//     gdn:  S = a S ; S += k^ (beta (v - S^T k^))^T ;  y = S^T q^       (gated delta rule, beta = sigmoid(b_proj u))
//           o_t = RMSNorm_per_head(y) * norm.weight
//   out = o_proj(o)
// Every token appends (k, v) to the KV cache AND advances S, whatever its mode, so either mode can take
// over at any position. The mode of position p is the sequence's ModeSchedule at p (SeqSlice::modes),
// else OryxConfig::default_mode. The recurrent feature map is shape-preserving (no extra dimensions):
// the state is H x hd x hd per layer.
#pragma once
#include <memory>
#include <string>

#include "mixers/attention.h"
#include "mixers/gated_deltanet.h"
#include "model/layer.h"
#include "ops/weight.h"

namespace subq {

// KV cache plus recurrent state S [H, hd, hd] (ssd: [h, p (v), n (k)]; gdn: [h, k, v]), kept in a
// GatedDeltaNetState (conv width 1: no conv history) so the gdn kernels run on it unchanged.
class OryxState : public LayerState {
 public:
  OryxState(int n_kv, int hd, int capacity, const GatedDeltaNetConfig& rec) : kv(n_kv, hd, capacity), rec(rec) {}
  std::unique_ptr<LayerState> Clone() const override { return std::make_unique<OryxState>(*this); }
  size_t Bytes() const override { return kv.Bytes() + rec.Bytes(); }
  size_t CapacityBytes() const override { return kv.CapacityBytes() + rec.Bytes(); }
  size_t RecurrentBytes() const { return rec.Bytes(); }
  KvCache kv;
  GatedDeltaNetState rec;
};

class OryxMixer : public Mixer {
 public:
  static Result<std::unique_ptr<OryxMixer>> Load(const ModelConfig& cfg, int layer, const TensorStore& store,
                                                 const std::string& prefix);
  using Mixer::Forward;
  using Mixer::NewState;
  std::unique_ptr<LayerState> NewState(int max_context) const override;
  size_t ScratchFloats(int T, int n_threads) const override;
  void Forward(const float* u, int T, std::span<const SeqSlice> seqs, ExecContext& ctx, float* out) const override;
  // The recurrent mode's mixing matrix (MaterializeMode for either).
  Tensor Materialize(const float* u, int L) const override { return MaterializeMode(u, L, MixerMode::kRecurrent); }
  // [H, L, L] from a fresh state: attention probabilities, or the recurrence's M with y_h = M_h v_{kv(h)}
  // (+ D v for ssd, before the output norm).
  Tensor MaterializeMode(const float* u, int L, MixerMode mode) const;
  int num_heads() const override { return a_.n_heads; }
  size_t WeightBytes() const override;

  // Parameters shared by both modes (q/k/v/o) and those only the recurrent mode uses.
  int64_t SharedParams() const;
  int64_t ExtraParams() const;
  double SharedFraction() const { return double(SharedParams()) / double(SharedParams() + ExtraParams()); }
  bool gdn() const { return gdn_; }
  MixerMode default_mode() const { return default_mode_; }
  // The materialized form of the whole mixer (tests' reference): out [L, dim] from M = MaterializeMode(u,
  // L, mode): y_h = M_h v_{kv(h)} (+ D v for ssd), per-head norm in recurrent mode, then o_proj.
  void OutputFromMixing(const Tensor& M, const float* u, int L, MixerMode mode, float* out) const;

 private:
  explicit OryxMixer(const ModelConfig& cfg);
  // Recurrence inputs of n rows from rotated q [n, H*hd], k, v [n, KV*hd], a/b projections [n, H]:
  // kq [n, k^ (H*hd) | q^ (H*hd)], vh [n, H*hd] (kv heads repeated), loga, dt, beta [n, H].
  void Features(int n, const float* q, const float* k, const float* v, const float* ap, const float* bp, float* kq,
                float* vh, float* loga, float* dt, float* beta) const;
  // Advances S over n rows and writes y [n, H*hd] (unnormalised). scratch: RecurrenceScratch floats.
  void Recur(const Threads& th, int n, const float* kq, const float* vh, const float* loga, const float* dt,
             const float* beta, OryxState& st, float* y, float* scratch) const;
  size_t RecurrenceScratch(const Threads& th) const;

  AttentionConfig a_;
  int dim_;
  bool gdn_ = false;
  MixerMode default_mode_ = MixerMode::kRecurrent;
  AttentionCore core_;
  GatedDeltaNetConfig rec_cfg_;  // H x hd heads, conv 1: the delta-rule kernels' view of this layer
  std::unique_ptr<GatedDeltaNetMixer> gdn_kernels_;  // Step/Prefill only (no weights)
  ops::Weight wq_, wk_, wv_, wo_, wa_, wb_;
  Tensor dt_bias_, A_log_, D_, norm_w_;
};

}  // namespace subq
