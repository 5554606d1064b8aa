// Initialisation helpers shared by the teacher loader and every student mixer (one definition each).
#pragma once
#include <torch/torch.h>

#include "util/tensor.h"

namespace subq::train {

constexpr double kZBias = 1.278464542761;  // silu(1.2785) ~ 1: a gate that starts open

// An engine tensor (f32) as an owned torch tensor.
torch::Tensor FromSubq(const Tensor& t);
// Un-permutes q/k rows from interleaved (Meta / llama2.c) to rotate-half (HF) RoPE layout.
torch::Tensor InterleavedToRotateHalf(const torch::Tensor& w, int n_heads, int head_dim);
// nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) -> [out, in].
torch::Tensor LinearInit(int64_t out, int64_t in);
// Depthwise conv weight [channels, 1, k] that passes its input through unchanged (last tap 1).
torch::Tensor IdentityConv(int64_t channels, int64_t k);
// GQA: [n_kv*hd, D] -> [n_heads*hd, D] with each kv head repeated n_heads/n_kv times.
torch::Tensor RepeatKvRows(const torch::Tensor& w, int n_heads, int n_kv, int hd);
// dt_bias = softplus^-1(dt), dt log-uniform in [1e-3, 0.1] floored at 1e-4 (SPEC 2, mamba_ssm) -> [heads].
torch::Tensor DtBiasInit(int64_t heads);
// A_log = log U(1, 16) (mamba_ssm / fla) -> [heads].
torch::Tensor ALogInit(int64_t heads);

}  // namespace subq::train
