// CudaRunner's state pools, io and graph-captured decode (cuda_runner.h); the layers' forward passes are in
// cuda_layers.cc.
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
  max_batch_ = Bucket(max_slots);
  const size_t R = IoRows();
  auto alloc = [&](size_t bytes) {
    void* p = nullptr;
    SUBQ_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 16));
    allocs_.push_back(p);
    return p;
  };
  SUBQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  gemm_ = std::make_unique<Gemm>();
  pos_.assign(max_slots_ + 1, 0);
  sampler_cfg_.assign(max_slots_ + 1, SamplerConfig{});
  for (int i = 0; i <= max_slots_; ++i) sampler_.emplace_back(SamplerConfig{});
  const size_t slots = max_slots_ + 1;
  size_t proj = std::max({d.qkv_width(), 2 * d.hidden, 1}), conv = 1, wide_y = 1;
  int attn_heads = std::max(d.H, 1), attn_hd = std::max(d.hd, 8);
  pools_ = Shapes(m_);
  for (size_t l = 0; l < pools_.size(); ++l) {
    const DeviceLayer& L = m_.layers()[l];
    Pools& pl = pools_[l];
    proj = std::max<size_t>(proj, Ld(L));
    has_attention_ |= pl.kv_width > 0;
    if (L.kind == MixerKind::kMamba2 || L.kind == MixerKind::kDiscreteMamba2) {
      conv = std::max<size_t>(conv, d.conv_dim), wide_y = std::max<size_t>(wide_y, d.d_inner);
      if (L.n_kept > 0) attn_heads = std::max(attn_heads, L.n_kept), attn_hd = std::max(attn_hd, d.ssm_P);
    } else if (L.kind == MixerKind::kGatedDeltaNet) {
      conv = std::max<size_t>(conv, 2 * d.gdn_Ck() + d.gdn_Cv()), wide_y = std::max<size_t>(wide_y, d.gdn_Cv());
    }
    for (int i = 0; i < 4; ++i)
      if (pl.per[i] > 0) {
        pl.f[i] = static_cast<float*>(alloc(slots * pl.per[i] * sizeof(float)));
        SUBQ_CUDA_CHECK(cudaMemset(pl.f[i], 0, slots * pl.per[i] * sizeof(float)));
      }
    if (pl.kv_width > 0) {
      const size_t kv = slots * size_t(max_context_) * pl.kv_width * sizeof(bf16);
      pl.kc = static_cast<bf16*>(alloc(kv)), pl.vc = static_cast<bf16*>(alloc(kv));
    }
  }
  state_bytes_per_slot_ = SlotBytes(m_, max_context_);
  const size_t m3_di = size_t(d.m3_H) * d.m3_P;
  const size_t wide = std::max({size_t(d.dim), size_t(d.d_inner), size_t(d.H) * d.hd, m3_di, size_t(d.gdn_Cv()), size_t(1)});
  x_ = static_cast<float*>(alloc(R * d.dim * sizeof(float)));
  hb_ = static_cast<bf16*>(alloc(R * wide * sizeof(bf16)));
  hb2_ = static_cast<bf16*>(alloc(R * std::max(d.hidden, 1) * sizeof(bf16)));
  proj_ = static_cast<float*>(alloc(R * proj * sizeof(float)));
  xbc_ = static_cast<float*>(alloc(R * conv * sizeof(float)));
  y_ = static_cast<float*>(alloc(R * wide_y * sizeof(float)));
  logits_ = static_cast<float*>(alloc(size_t(max_batch_) * d.vocab * sizeof(float)));
  workspace_bytes_ = R * (d.dim * 4 + wide * 2 + std::max(d.hidden, 1) * 2 + proj * 4 + conv * 4 + wide_y * 4) +
                     size_t(max_batch_) * d.vocab * 4;
  if (has_attention_) {
    const size_t n = AttentionScratchFloats(R, attn_heads, attn_hd, max_context_);
    attn_scratch_ = static_cast<float*>(alloc(n * sizeof(float)));
    workspace_bytes_ += n * 4;
  }
  if (d.ssm_H > 0) {
    const size_t n = SsdScratchFloats(SsdParams{d.ssm_H, d.ssm_P, d.ssm_N, d.ssm_G}, max_rows_);
    ssd_scratch_ = static_cast<float*>(alloc(n * sizeof(float)));
    workspace_bytes_ += n * 4;
  }
  if (d.m3_H > 0) {
    Mamba3Params p;
    p.H = d.m3_H, p.P = d.m3_P, p.N = d.m3_N, p.G = d.m3_G, p.R = d.m3_R, p.NA = d.m3_NA;
    const size_t n = Mamba3ScratchFloats(p, static_cast<int>(R));
    m3_scratch_ = static_cast<float*>(alloc(n * sizeof(float)));
    workspace_bytes_ += n * 4;
  }
  d_io_ = static_cast<int*>(alloc(5 * R * sizeof(int)));
  d_fio_ = static_cast<float*>(alloc(3 * R * sizeof(float)));
  SUBQ_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&h_io_), 5 * R * sizeof(int)));
  SUBQ_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&h_fio_), 3 * R * sizeof(float)));
  std::fill(h_io_, h_io_ + 5 * R, 0);
  std::fill(h_fio_, h_fio_ + 3 * R, 0.0f);
  SUBQ_CUDA_CHECK(cudaDeviceSynchronize());
}

std::vector<CudaRunner::Pools> CudaRunner::Shapes(const CudaModel& model) {
  const ModelDims& d = model.dims();
  std::vector<Pools> out;
  for (const DeviceLayer& L : model.layers()) {
    Pools pl;
    if (L.kind == MixerKind::kAttention) {
      pl.kv_width = d.KV * d.hd;
    } else if (L.kind == MixerKind::kMamba2 || L.kind == MixerKind::kDiscreteMamba2) {
      pl.per[0] = size_t(d.K - 1) * d.conv_dim, pl.per[1] = size_t(d.ssm_H) * d.ssm_P * d.ssm_N;
      pl.kv_width = L.n_kept * d.ssm_P;
    } else if (L.kind == MixerKind::kMamba3) {
      pl.per[0] = size_t(d.m3_H) * d.m3_NA, pl.per[1] = size_t(d.m3_H) * d.m3_P * d.m3_N;
      pl.per[2] = size_t(d.m3_R) * d.m3_H * d.m3_N, pl.per[3] = size_t(d.m3_H) * d.m3_P;
    } else {
      pl.per[0] = size_t(d.gdn_K - 1) * (2 * d.gdn_Ck() + d.gdn_Cv());
      pl.per[1] = size_t(d.gdn_Hv) * d.gdn_dv * d.gdn_dk;
    }
    out.push_back(pl);
  }
  return out;
}

size_t CudaRunner::SlotBytes(const CudaModel& model, int max_context) {
  size_t n = 0;
  for (const Pools& pl : Shapes(model))
    n += (pl.per[0] + pl.per[1] + pl.per[2] + pl.per[3]) * sizeof(float) +
         2 * size_t(max_context) * pl.kv_width * sizeof(bf16);
  return n;
}

size_t CudaRunner::StateBytesUsed(int slot) const {
  return SlotBytes(m_, 0) + (SlotBytes(m_, 1) - SlotBytes(m_, 0)) * size_t(pos_[slot]);
}

CudaRunner::~CudaRunner() {
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g.exec);
  for (void* p : allocs_) cudaFree(p);
  cudaFreeHost(h_io_);
  cudaFreeHost(h_fio_);
  gemm_.reset();
  cudaStreamDestroy(stream_);
}

void CudaRunner::Reset(int slot) {
  for (const Pools& pl : pools_)
    for (int i = 0; i < 4; ++i)
      if (pl.f[i]) SUBQ_CUDA_CHECK(cudaMemsetAsync(pl.f[i] + slot * pl.per[i], 0, pl.per[i] * 4, stream_));
  pos_[slot] = 0;
  SetSampler(slot, SamplerConfig{});
}

void CudaRunner::Copy(int from, int to) {
  if (from == to) return;
  for (const Pools& pl : pools_) {
    for (int i = 0; i < 4; ++i)
      if (pl.f[i])
        SUBQ_CUDA_CHECK(cudaMemcpyAsync(pl.f[i] + to * pl.per[i], pl.f[i] + from * pl.per[i], pl.per[i] * 4,
                                        cudaMemcpyDeviceToDevice, stream_));
    if (pl.kc) {
      const size_t n = size_t(pos_[from]) * pl.kv_width, cap = size_t(max_context_) * pl.kv_width;
      for (bf16* c : {pl.kc, pl.vc})
        SUBQ_CUDA_CHECK(cudaMemcpyAsync(c + to * cap, c + from * cap, n * sizeof(bf16), cudaMemcpyDeviceToDevice, stream_));
    }
  }
  pos_[to] = pos_[from];
  SUBQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaRunner::SetSampler(int slot, const SamplerConfig& sc) {
  sampler_cfg_[slot] = sc;
  sampler_[slot] = Sampler(sc);
}

void CudaRunner::FillStatesRandom(uint64_t seed) {
  const size_t slots = max_slots_ + 1;
  for (size_t l = 0; l < pools_.size(); ++l) {
    const Pools& pl = pools_[l];
    for (int i = 0; i < 4; ++i)
      if (pl.f[i]) FillUniform(stream_, pl.f[i], slots * pl.per[i], seed + 8 * l + i, -0.1f, 0.1f);
    const size_t kv_n = slots * size_t(max_context_) * pl.kv_width;
    if (pl.kc) FillUniform(stream_, pl.kc, kv_n, seed + 8 * l + 4, -1.0f, 1.0f);
    if (pl.vc) FillUniform(stream_, pl.vc, kv_n, seed + 8 * l + 5, -1.0f, 1.0f);
  }
  SUBQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaRunner::Upload(int rows, const int* tok, const int* slot, const int* pos) {
  const int R = IoRows();
  std::copy_n(tok, rows, h_io_);
  std::copy_n(slot, rows, h_io_ + R);
  std::copy_n(pos, rows, h_io_ + 2 * R);
  // Sampling parameters: row r (decode) or row 0 (prefill: the last token is the only sampled row).
  for (int r = 0; r < rows; ++r) {
    const bool real = slot[r] >= 0 && slot[r] < max_slots_ && (r == 0 || slot[r] != slot[0]);
    const SamplerConfig& sc = real ? sampler_cfg_[slot[r]] : SamplerConfig{};
    h_io_[4 * R + r] = sc.top_k;
    h_fio_[r] = sc.temperature, h_fio_[R + r] = sc.top_p;
    h_fio_[2 * R + r] = real && sc.temperature > 0.0f ? static_cast<float>(sampler_[slot[r]].NextUniform()) : 0.0f;
  }
  SUBQ_CUDA_CHECK(cudaMemcpyAsync(d_io_, h_io_, 5 * R * sizeof(int), cudaMemcpyHostToDevice, stream_));
  SUBQ_CUDA_CHECK(cudaMemcpyAsync(d_fio_, h_fio_, 3 * R * sizeof(float), cudaMemcpyHostToDevice, stream_));
}

int CudaRunner::Bucket(int B) const {
  int b = 1;
  while (b < B) b *= 2;
  return b;
}

int CudaRunner::Prefill(int slot, const int* tokens, int n, std::vector<float>* logits) {
  if (slot < 0 || slot >= max_slots_) Fail("slot out of range");
  if (has_attention_ && pos_[slot] + n > max_context_) Fail("prompt exceeds the KV capacity (max_context)");
  const int R = IoRows();
  std::vector<int> sl(max_rows_, slot), ps(max_rows_);
  int next = -1;
  for (int done = 0; done < n;) {
    const int rows = std::min(max_rows_, n - done);
    for (int t = 0; t < rows; ++t) ps[t] = pos_[slot] + t;
    const bool last = done + rows == n;
    // Only the prompt's last token is sampled: earlier pieces draw nothing from the slot's stream.
    const SamplerConfig keep = sampler_cfg_[slot];
    if (!last) sampler_cfg_[slot].temperature = 0.0f;
    Upload(rows, tokens + done, sl.data(), ps.data());
    sampler_cfg_[slot] = keep;
    Forward(rows, /*decode=*/false, slot, rows - 1, 1, logits_);
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

void CudaRunner::PrefillAllLogits(int slot, const int* tokens, int n, float* logits) {
  if (slot < 0 || slot >= max_slots_) Fail("slot out of range");
  if (has_attention_ && pos_[slot] + n > max_context_) Fail("prompt exceeds the KV capacity (max_context)");
  const size_t V = m_.dims().vocab;
  if (all_logits_ == nullptr) {
    SUBQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&all_logits_), size_t(max_rows_) * V * sizeof(float)));
    allocs_.push_back(all_logits_);
  }
  const SamplerConfig keep = sampler_cfg_[slot];
  sampler_cfg_[slot] = SamplerConfig{};  // scoring: no draws
  std::vector<int> sl(max_rows_, slot), ps(max_rows_);
  for (int done = 0; done < n;) {
    const int rows = std::min(max_rows_, n - done);
    for (int t = 0; t < rows; ++t) ps[t] = pos_[slot] + t;
    Upload(rows, tokens + done, sl.data(), ps.data());
    Forward(rows, /*decode=*/false, slot, 0, rows, all_logits_);
    SUBQ_CUDA_CHECK(cudaMemcpyAsync(logits + size_t(done) * V, all_logits_, size_t(rows) * V * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
    SUBQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    pos_[slot] += rows;
    done += rows;
  }
  sampler_cfg_[slot] = keep;
}

void CudaRunner::Decode(int B, const int* slots, const int* tokens, int* next, std::vector<float>* logits) {
  if (B < 1 || B > max_slots_) Fail("decode batch out of range");
  const int bucket = Bucket(B), R = IoRows();
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
      Forward(bucket, true, -1, 0, bucket, logits_);
      SUBQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
      cudaGraph_t graph;
      SUBQ_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      Forward(bucket, true, -1, 0, bucket, logits_);
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
    Forward(bucket, true, -1, 0, bucket, logits_);
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
