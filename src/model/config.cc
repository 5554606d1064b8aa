#include "model/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace subq {

const char* MixerKindName(MixerKind k) {
  switch (k) {
    case MixerKind::kAttention: return "attention";
    case MixerKind::kMamba2: return "mamba2";
    case MixerKind::kDiscreteMamba2: return "discrete_mamba2";
    case MixerKind::kMamba3: return "mamba3";
    case MixerKind::kGatedDeltaNet: return "gated_deltanet";
    case MixerKind::kOryx: return "oryx";
  }
  return "?";
}

bool ParseMixerKind(const std::string& s, MixerKind* out) {
  for (MixerKind k : {MixerKind::kAttention, MixerKind::kMamba2, MixerKind::kDiscreteMamba2, MixerKind::kMamba3,
                      MixerKind::kGatedDeltaNet, MixerKind::kOryx}) {
    if (s == MixerKindName(k)) {
      *out = k;
      return true;
    }
  }
  return false;
}

std::string ModelConfig::ToString() const {
  std::string s;
  auto line = [&](const std::string& k, const std::string& v) { s += fmt::format("  {:<24} {}\n", k, v); };
  line("family", family);
  line("vocab_size", std::to_string(vocab_size));
  line("dim", std::to_string(dim));
  line("hidden_dim", std::to_string(hidden_dim));
  line("n_layers", std::to_string(n_layers));
  line("max_seq_len", std::to_string(max_seq_len));
  line("norm_eps", fmt::format("{:g}", norm_eps));
  line("tie_embeddings", tie_embeddings ? "true" : "false");
  if (bf16_state) line("recurrent_state", "bf16");
  line("bos_id / eos_id", fmt::format("{} / {}", bos_id, eos_id));
  bool any_attn = false;
  std::vector<std::string> kinds;
  for (const auto& l : layers) {
    std::string k = MixerKindName(l.mixer);
    if (!l.attention_heads.empty()) k += fmt::format("+attn_heads{}", l.attention_heads);
    any_attn |= l.mixer == MixerKind::kAttention || l.mixer == MixerKind::kOryx || !l.attention_heads.empty();
    kinds.push_back(k);
  }
  line("layers", fmt::format("{}", fmt::join(kinds, ", ")));
  if (any_attn) {
    line("attn.heads / kv_heads", fmt::format("{} / {}", attn.n_heads, attn.n_kv_heads));
    line("attn.head_dim", std::to_string(attn.head_dim));
    line("attn.rope_theta", fmt::format("{:g}", attn.rope_theta));
    line("attn.rope_layout", attn.rope_interleaved ? "interleaved" : "rotate-half");
    if (!attn.rope_scaling.type.empty())
      line("attn.rope_scaling",
           fmt::format("{} factor={:g} low={:g} high={:g} orig={}", attn.rope_scaling.type, attn.rope_scaling.factor,
                       attn.rope_scaling.low_freq_factor, attn.rope_scaling.high_freq_factor,
                       attn.rope_scaling.original_max_position_embeddings));
  }
  for (const auto& l : layers) {
    if (l.mixer == MixerKind::kMamba2) {
      line("mamba2", fmt::format("heads={} head_dim={} state={} groups={} conv={} chunk={} grouped_norm={}",
                                 mamba2.n_heads, mamba2.head_dim, mamba2.state_size, mamba2.n_groups,
                                 mamba2.conv_kernel, mamba2.chunk_size, mamba2.norm_grouped));
      break;
    }
  }
  for (const auto& l : layers) {
    if (l.mixer == MixerKind::kDiscreteMamba2) {
      line("discrete_mamba2", fmt::format("qk_heads={} v_heads={} head_dim={} state={} conv={} chunk={}",
                                          dm2.n_qk_heads, dm2.n_v_heads, dm2.head_dim, dm2.d_state,
                                          dm2.conv_kernel, dm2.chunk_size));
      break;
    }
  }
  for (const auto& l : layers) {
    if (l.mixer == MixerKind::kMamba3) {
      line("mamba3", fmt::format("heads={} head_dim={} state={} groups={} mimo_rank={} rope_fraction={:g} "
                                 "output_norm={} chunk={}",
                                 mamba3.n_heads, mamba3.head_dim, mamba3.state_size, mamba3.n_groups,
                                 mamba3.mimo_rank, mamba3.rope_fraction, mamba3.output_norm, mamba3.chunk_size));
      break;
    }
  }
  for (const auto& l : layers) {
    if (l.mixer == MixerKind::kGatedDeltaNet) {
      line("gated_deltanet", fmt::format("qk_heads={} v_heads={} head_k_dim={} head_v_dim={} conv={} chunk={}",
                                         gdn.n_qk_heads, gdn.n_v_heads, gdn.head_k_dim, gdn.head_v_dim,
                                         gdn.conv_kernel, gdn.chunk_size));
      break;
    }
  }
  for (const auto& l : layers) {
    if (l.mixer == MixerKind::kOryx) {
      line("oryx", fmt::format("recurrence={} default_mode={} chunk={}", oryx.recurrence, oryx.default_mode,
                               oryx.chunk_size));
      break;
    }
  }
  return s;
}

}  // namespace subq
