// Forward passes of CudaModel over slot-indexed state pools, and graph-captured decode (cuda_runner.h).
#include "engine_cuda/cuda_runner.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace subq::cuda {
namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "CudaRunner: %s\n", what);
  std::abort();
}

}  // namespace

CudaRunner::CudaRunner(const CudaModel& model, int max_slots, int max_context, int max_rows)
    : m_(model), max_slots_(max_slots), max_context_(max_context), max_rows_(max_rows) {
  const ModelDims& d = m_.dims();
  max_batch_ = 1;
  while (max_batch_ < max_slots) max_batch_ *= 2;
  const size_t R = std::max(max_rows_, max_batch_);
  auto alloc = [&](size_t bytes) {
    void* p = nullptr;
    SUBQ_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 16));
    allocs_.push_back(p);
    return p;
  };
  SUBQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  gemm_ = std::make_unique<Gemm>();
  pos_.assign(max_slots_ + 1, 0);
  const size_t slots = max_slots_ + 1;
  const size_t conv_per = size_t(d.K - 1) * d.conv_dim, ssm_per = size_t(d.ssm_H) * d.ssm_P * d.ssm_N;
  const size_t kv_per = size_t(max_context_) * d.KV * d.hd;
  for (const DeviceLayer& L : m_.layers()) {
    if (L.kind == MixerKind::kAttention) {
      has_attention_ = true;
      kc_.push_back(static_cast<bf16*>(alloc(slots * kv_per * sizeof(bf16))));
      vc_.push_back(static_cast<bf16*>(alloc(slots * kv_per * sizeof(bf16))));
      conv_.push_back(nullptr), ssm_.push_back(nullptr);
      state_bytes_per_slot_ += 2 * kv_per * sizeof(bf16);
    } else {
      conv_.push_back(static_cast<float*>(alloc(slots * conv_per * sizeof(float))));
      ssm_.push_back(static_cast<float*>(alloc(slots * ssm_per * sizeof(float))));
      kc_.push_back(nullptr), vc_.push_back(nullptr);
      state_bytes_per_slot_ += (conv_per + ssm_per) * sizeof(float);
    }
  }
  for (size_t l = 0; l < conv_.size(); ++l) {
    if (conv_[l]) SUBQ_CUDA_CHECK(cudaMemset(conv_[l], 0, slots * conv_per * sizeof(float)));
    if (ssm_[l]) SUBQ_CUDA_CHECK(cudaMemset(ssm_[l], 0, slots * ssm_per * sizeof(float)));
  }
  const size_t wide = std::max({d.dim, d.d_inner, d.H * d.hd, 1});
  const size_t proj = std::max({d.qkv_width(), d.proj_rows, 2 * d.hidden, 1});
  x_ = static_cast<float*>(alloc(R * d.dim * sizeof(float)));
  hb_ = static_cast<bf16*>(alloc(R * wide * sizeof(bf16)));
  hb2_ = static_cast<bf16*>(alloc(R * std::max(d.hidden, 1) * sizeof(bf16)));
  proj_ = static_cast<float*>(alloc(R * proj * sizeof(float)));
  xbc_ = static_cast<float*>(alloc(R * std::max(d.conv_dim, 1) * sizeof(float)));
  y_ = static_cast<float*>(alloc(R * std::max(d.d_inner, 1) * sizeof(float)));
  logits_ = static_cast<float*>(alloc(size_t(max_batch_) * d.vocab * sizeof(float)));
  if (has_attention_) attn_scratch_ = static_cast<float*>(alloc(AttentionScratchFloats(R, d.H, d.hd, max_context_) * 4));
  if (d.ssm_H > 0) {
    const SsdParams p{d.ssm_H, d.ssm_P, d.ssm_N, d.ssm_G};
    ssd_scratch_ = static_cast<float*>(alloc(SsdScratchFloats(p, max_rows_) * sizeof(float)));
  }
  d_io_ = static_cast<int*>(alloc(4 * R * sizeof(int)));
  SUBQ_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&h_io_), 4 * R * sizeof(int)));
  SUBQ_CUDA_CHECK(cudaDeviceSynchronize());
}

CudaRunner::~CudaRunner() {
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g.exec);
  for (void* p : allocs_) cudaFree(p);
  cudaFreeHost(h_io_);
  gemm_.reset();
  cudaStreamDestroy(stream_);
}

void CudaRunner::Reset(int slot) {
  const ModelDims& d = m_.dims();
  const size_t conv_per = size_t(d.K - 1) * d.conv_dim, ssm_per = size_t(d.ssm_H) * d.ssm_P * d.ssm_N;
  for (size_t l = 0; l < conv_.size(); ++l) {
    if (conv_[l]) SUBQ_CUDA_CHECK(cudaMemsetAsync(conv_[l] + slot * conv_per, 0, conv_per * 4, stream_));
    if (ssm_[l]) SUBQ_CUDA_CHECK(cudaMemsetAsync(ssm_[l] + slot * ssm_per, 0, ssm_per * 4, stream_));
  }
  pos_[slot] = 0;
}

void CudaRunner::FillStatesRandom(uint64_t seed) {
  const ModelDims& d = m_.dims();
  const size_t slots = max_slots_ + 1;
  const size_t conv_n = slots * (d.K - 1) * d.conv_dim, ssm_n = slots * size_t(d.ssm_H) * d.ssm_P * d.ssm_N;
  const size_t kv_n = slots * size_t(max_context_) * d.KV * d.hd;
  for (size_t l = 0; l < conv_.size(); ++l) {
    if (conv_[l]) FillUniform(stream_, conv_[l], conv_n, seed + 4 * l, -0.1f, 0.1f);
    if (ssm_[l]) FillUniform(stream_, ssm_[l], ssm_n, seed + 4 * l + 1, -0.1f, 0.1f);
    if (kc_[l]) FillUniform(stream_, kc_[l], kv_n, seed + 4 * l + 2, -1.0f, 1.0f);
    if (vc_[l]) FillUniform(stream_, vc_[l], kv_n, seed + 4 * l + 3, -1.0f, 1.0f);
  }
  SUBQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaRunner::Forward(int rows, bool decode, int pslot, int lrow0, int lrows) {
  const ModelDims& d = m_.dims();
  const ModelConfig& c = m_.config();
  const int R = std::max(max_rows_, max_batch_);
  const int *tok = d_io_, *slot = d_io_ + R, *pos = d_io_ + 2 * R;
  int* next = d_io_ + 3 * R;
  cudaStream_t s = stream_;
  Gemm& g = *gemm_;
  Embed(s, tok, m_.embed(), x_, rows, d.dim);
  for (size_t l = 0; l < m_.layers().size(); ++l) {
    const DeviceLayer& L = m_.layers()[l];
    RmsNorm(s, x_, L.in_norm, hb_, rows, d.dim, c.norm_eps);  // [rows, dim]
    if (L.kind == MixerKind::kAttention) {
      const int qw = d.qkv_width(), qd = d.H * d.hd;
      g.Run(s, hb_, d.dim, rows, L.wqkv, qw, d.dim, proj_, qw);  // [rows, q | k | v]
      Rope(s, proj_, qw, rows, d.H, d.hd, pos, m_.inv_freq(), c.attn.rope_interleaved);
      Rope(s, proj_ + qd, qw, rows, d.KV, d.hd, pos, m_.inv_freq(), c.attn.rope_interleaved);
      KvAppend(s, proj_ + qd, proj_ + qd + d.KV * d.hd, qw, rows, d.KV, d.hd, kc_[l], vc_[l], max_context_, slot, pos);
      Attention(s, proj_, qw, rows, d.H, d.KV, d.hd, kc_[l], vc_[l], max_context_, slot, pos, max_context_, hb_, qd,
                attn_scratch_);                                   // [rows, H hd]
      g.Run(s, hb_, qd, rows, L.wo, d.dim, qd, x_, d.dim, true);  // x += o_proj(att)
    } else {
      const bool m2 = L.kind == MixerKind::kMamba2;
      const int E = d.d_inner, cd = d.conv_dim, pr = d.proj_rows, GN = d.ssm_G * d.ssm_N;
      g.Run(s, hb_, d.dim, rows, L.in_proj, pr, d.dim, proj_, pr);
      // Mamba-2 rows [z | xBC | dt]; Discrete Mamba-2 rows [xBC | z | A_log].
      const float* xbc_in = m2 ? proj_ + E : proj_;
      const float* z = m2 ? proj_ : proj_ + cd;
      const float* dt = m2 ? proj_ + E + cd : proj_ + cd + E;
      const size_t conv_per = size_t(d.K - 1) * cd, ssm_per = size_t(d.ssm_H) * d.ssm_P * d.ssm_N;
      const SsdParams p{d.ssm_H, d.ssm_P, d.ssm_N, d.ssm_G, m2 ? L.dt_bias : nullptr, m2 ? L.A_log : nullptr, L.D};
      if (decode) {
        CausalConvStep(s, xbc_in, pr, rows, cd, L.conv_w, L.conv_b, d.K, conv_[l], slot, xbc_, cd, m2);
        SsdStep(s, p, rows, xbc_, cd, xbc_ + E, xbc_ + E + GN, cd, dt, pr, ssm_[l], slot, y_, E);
      } else {
        CausalConvPrefill(s, xbc_in, pr, rows, cd, L.conv_w, L.conv_b, d.K, conv_[l] + pslot * conv_per, xbc_, cd, m2);
        SsdChunkedScan(s, p, rows, xbc_, cd, xbc_ + E, xbc_ + E + GN, cd, dt, pr, ssm_[l] + pslot * ssm_per, y_, E,
                       ssd_scratch_);
      }
      if (m2) {
        const int group = c.mamba2.norm_grouped ? E / d.ssm_G : E;
        GatedRmsNorm(s, y_, E, z, pr, L.norm_w, hb_, rows, E, group, c.mamba2.norm_eps);
      } else {
        SiluGate(s, y_, E, z, pr, L.z_bias, hb_, rows, E);
      }
      g.Run(s, hb_, E, rows, L.out_proj, d.dim, E, x_, d.dim, true);  // x += out_proj(y)
    }
    if (L.mlp_norm != nullptr) {
      RmsNorm(s, x_, L.mlp_norm, hb_, rows, d.dim, c.norm_eps);
      g.Run(s, hb_, d.dim, rows, L.w_gate_up, 2 * d.hidden, d.dim, proj_, 2 * d.hidden);  // [rows, gate | up]
      SiluMul(s, proj_, hb2_, rows, d.hidden);
      g.Run(s, hb2_, d.hidden, rows, L.w_down, d.dim, d.hidden, x_, d.dim, true);
    }
  }
  RmsNorm(s, x_ + size_t(lrow0) * d.dim, m_.final_norm(), hb_, lrows, d.dim, c.norm_eps);
  g.Run(s, hb_, d.dim, lrows, m_.lm_head(), d.vocab, d.dim, logits_, d.vocab);
  Argmax(s, logits_, d.vocab, lrows, d.vocab, next);
}

void CudaRunner::Upload(int rows, const int* tok, const int* slot, const int* pos) {
  const int R = std::max(max_rows_, max_batch_);
  std::copy_n(tok, rows, h_io_);
  std::copy_n(slot, rows, h_io_ + R);
  std::copy_n(pos, rows, h_io_ + 2 * R);
  SUBQ_CUDA_CHECK(cudaMemcpyAsync(d_io_, h_io_, 3 * R * sizeof(int), cudaMemcpyHostToDevice, stream_));
}

int CudaRunner::Bucket(int B) const {
  int b = 1;
  while (b < B) b *= 2;
  return b;
}

int CudaRunner::Prefill(int slot, const int* tokens, int n, std::vector<float>* logits) {
  if (slot < 0 || slot >= max_slots_) Fail("slot out of range");
  if (has_attention_ && pos_[slot] + n > max_context_) Fail("prompt exceeds the KV capacity (max_context)");
  const int R = std::max(max_rows_, max_batch_);
  std::vector<int> sl(max_rows_, slot), ps(max_rows_);
  int next = -1;
  for (int done = 0; done < n;) {
    const int rows = std::min(max_rows_, n - done);
    for (int t = 0; t < rows; ++t) ps[t] = pos_[slot] + t;
    Upload(rows, tokens + done, sl.data(), ps.data());
    Forward(rows, /*decode=*/false, slot, rows - 1, 1);
    pos_[slot] += rows;
    done += rows;
    SUBQ_CUDA_CHECK(cudaMemcpyAsync(h_io_ + 3 * R, d_io_ + 3 * R, sizeof(int), cudaMemcpyDeviceToHost, stream_));
    SUBQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    next = h_io_[3 * R];
  }
  if (logits != nullptr) {
    logits->resize(m_.dims().vocab);
    SUBQ_CUDA_CHECK(cudaMemcpy(logits->data(), logits_, logits->size() * 4, cudaMemcpyDeviceToHost));
  }
  return next;
}

void CudaRunner::Decode(int B, const int* slots, const int* tokens, int* next, std::vector<float>* logits) {
  if (B < 1 || B > max_slots_) Fail("decode batch out of range");
  const int bucket = Bucket(B), R = std::max(max_rows_, max_batch_);
  std::vector<int> tok(bucket, 0), sl(bucket, max_slots_), ps(bucket, 0);  // padding rows: the spare slot
  for (int r = 0; r < B; ++r) {
    if (slots[r] < 0 || slots[r] >= max_slots_) Fail("slot out of range");
    if (has_attention_ && pos_[slots[r]] >= max_context_) Fail("sequence reached its KV capacity (max_context)");
    tok[r] = tokens[r], sl[r] = slots[r], ps[r] = pos_[slots[r]];
  }
  if (use_graphs) {
    auto it = graphs_.find(bucket);
    if (it == graphs_.end()) {
      // Warm-up on padding rows only (cuBLASLt picks its algorithms outside the capture), then capture.
      std::vector<int> z(bucket, 0), spare(bucket, max_slots_);
      Upload(bucket, z.data(), spare.data(), z.data());
      Forward(bucket, true, -1, 0, bucket);
      SUBQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
      cudaGraph_t graph;
      SUBQ_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      Forward(bucket, true, -1, 0, bucket);
      SUBQ_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
      Graph gr;
      SUBQ_CUDA_CHECK(cudaGraphInstantiate(&gr.exec, graph, 0));
      SUBQ_CUDA_CHECK(cudaGraphDestroy(graph));
      it = graphs_.emplace(bucket, gr).first;
    }
    Upload(bucket, tok.data(), sl.data(), ps.data());
    SUBQ_CUDA_CHECK(cudaGraphLaunch(it->second.exec, stream_));
  } else {
    Upload(bucket, tok.data(), sl.data(), ps.data());
    Forward(bucket, true, -1, 0, bucket);
  }
  SUBQ_CUDA_CHECK(cudaMemcpyAsync(h_io_ + 3 * R, d_io_ + 3 * R, B * sizeof(int), cudaMemcpyDeviceToHost, stream_));
  SUBQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::copy_n(h_io_ + 3 * R, B, next);
  if (logits != nullptr) {
    logits->resize(size_t(B) * m_.dims().vocab);
    SUBQ_CUDA_CHECK(cudaMemcpy(logits->data(), logits_, logits->size() * 4, cudaMemcpyDeviceToHost));
  }
  for (int r = 0; r < B; ++r) ++pos_[slots[r]];
}

}  // namespace subq::cuda
