// The tensor table of every mixer kind and the field view of ModelConfig (schema.h).
#include "model/schema.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <type_traits>

namespace subq {

std::vector<TensorSpec> MixerKindTensors(const ModelConfig& cfg, MixerKind kind) {
  const int64_t D = cfg.dim;
  switch (kind) {
    case MixerKind::kAttention: {  // SPEC 1 (HF names; kept teacher layers of layer hybrids)
      const AttentionConfig& a = cfg.attn;
      const int64_t q = int64_t{a.n_heads} * a.head_dim, kv = int64_t{a.n_kv_heads} * a.head_dim;
      return {{"q_proj.weight", {q, D}}, {"k_proj.weight", {kv, D}}, {"v_proj.weight", {kv, D}},
              {"o_proj.weight", {D, q}}};
    }
    case MixerKind::kMamba2: {  // SPEC 2: in_proj rows [z | xBC | dt]
      const Mamba2Config& m = cfg.mamba2;
      const int64_t E = m.d_inner(), H = m.n_heads, GN = int64_t{m.n_groups} * m.state_size, conv = E + 2 * GN;
      return {{"in_proj.weight", {2 * E + 2 * GN + H, D}},
              {"conv1d.weight", {conv, 1, m.conv_kernel}},
              {"conv1d.bias", {conv}, /*optional=*/true},
              {"dt_bias", {H}},
              {"A_log", {H}},
              {"D", {H}},
              {"norm.weight", {E}},
              {"out_proj.weight", {D, E}}};
    }
    case MixerKind::kDiscreteMamba2: {  // SPEC 3
      const DiscreteMamba2Config& m = cfg.dm2;
      const int64_t E = m.d_inner(), Hv = m.n_v_heads, conv = E + 2 * int64_t{m.n_qk_heads} * m.d_state;
      std::vector<TensorSpec> t = {{"in_proj.weight", {2 * E + 2 * int64_t{m.n_qk_heads} * m.d_state + Hv, D}},
                                   {"z_bias", {E}},
                                   {"conv1d.weight", {conv, 1, m.conv_kernel}}};
      if (m.conv_bias) t.push_back({"conv1d.bias", {conv}});
      t.push_back({"D", {Hv}});
      t.push_back({"out_proj.weight", {D, E}});
      return t;
    }
    case MixerKind::kMamba3: {  // SPEC 4
      const Mamba3Config& m = cfg.mamba3;
      const int64_t H = m.n_heads, P = m.head_dim, N = m.state_size, R = m.mimo_rank, E = m.d_inner();
      const int64_t rows = 2 * E + 2 * int64_t{m.n_groups} * R * N + 3 * H + m.n_angles();
      std::vector<TensorSpec> t = {{"in_proj.weight", {rows, D}}, {"dt_bias", {H}},         {"D", {H}},
                                   {"B_norm.weight", {N}},        {"C_norm.weight", {N}},   {"B_bias", {H, R, N}},
                                   {"C_bias", {H, R, N}}};
      if (R > 1)
        for (const char* n : {"mimo_x", "mimo_z", "mimo_o"}) t.push_back({n, {H, R, P}});
      if (m.output_norm) t.push_back({"norm.weight", {E}});
      t.push_back({"out_proj.weight", {D, E}});
      return t;
    }
    case MixerKind::kOryx: {  // mixers/oryx.h: the attention's q/k/v/o, then the recurrent mode's extras
      std::vector<TensorSpec> t = MixerKindTensors(cfg, MixerKind::kAttention);
      const int64_t H = cfg.attn.n_heads;
      t.push_back({"oryx_a_proj.weight", {H, D}});
      t.push_back({"oryx_dt_bias", {H}});
      t.push_back({"oryx_A_log", {H}});
      t.push_back({"oryx_norm.weight", {cfg.attn.head_dim}});
      if (cfg.oryx.recurrence == "gdn") t.push_back({"oryx_b_proj.weight", {H, D}});
      else t.push_back({"oryx_D", {H}});
      return t;
    }
    case MixerKind::kGatedDeltaNet: {  // SPEC 5 (fla names)
      const GatedDeltaNetConfig& g = cfg.gdn;
      const int64_t Ck = int64_t{g.n_qk_heads} * g.head_k_dim, Cv = int64_t{g.n_v_heads} * g.head_v_dim;
      const int64_t Hv = g.n_v_heads, K = g.conv_kernel;
      return {{"q_proj.weight", {Ck, D}},      {"k_proj.weight", {Ck, D}},      {"v_proj.weight", {Cv, D}},
              {"a_proj.weight", {Hv, D}},      {"b_proj.weight", {Hv, D}},      {"A_log", {Hv}},
              {"dt_bias", {Hv}},               {"q_conv1d.weight", {Ck, 1, K}}, {"k_conv1d.weight", {Ck, 1, K}},
              {"v_conv1d.weight", {Cv, 1, K}}, {"g_proj.weight", {Cv, D}},      {"o_norm.weight", {g.head_v_dim}},
              {"o_proj.weight", {D, Cv}}};
    }
  }
  return {};
}

Result<std::vector<TensorSpec>> MixerTensors(const ModelConfig& cfg, int layer) {
  if (layer < 0 || layer >= static_cast<int>(cfg.layers.size()))
    return Errorf("layer {} out of range (config lists {} layers)", layer, cfg.layers.size());
  const LayerConfig& l = cfg.layers[layer];
  std::vector<TensorSpec> t = MixerKindTensors(cfg, l.mixer);
  if (!l.attention_heads.empty()) {  // SPEC 6: kept heads of a head-level hybrid (head dim of the SSM heads)
    const int64_t rows = static_cast<int64_t>(l.attention_heads.size()) * cfg.dm2.head_dim;
    for (const char* n : {"attn_q_proj.weight", "attn_k_proj.weight", "attn_v_proj.weight"})
      t.push_back({n, {rows, cfg.dim}});
  }
  return t;
}

std::vector<std::string> MixerTensorNames(const ModelConfig& cfg, MixerKind kind) {
  std::vector<std::string> out;
  for (const auto& t : MixerKindTensors(cfg, kind)) out.push_back(t.name);
  return out;
}

Status LoadTable(const TensorStore& store, const std::string& prefix, const std::vector<TensorSpec>& specs,
                 const std::map<std::string, TableSlot>& slots) {
  for (const TensorSpec& t : specs) {
    auto it = slots.find(t.name);
    if (it == slots.end()) return Errorf("internal error: table tensor '{}' has no slot in the loader", t.name);
    const std::string name = prefix + t.name;
    if (t.optional && !store.Has(name)) continue;
    if (auto* w = std::get_if<ops::Weight*>(&it->second)) {
      if (t.shape.size() != 2) return Errorf("internal error: '{}' is not a matrix in the table", t.name);
      SUBQ_ASSIGN_OR_RETURN(**w, store.LoadWeight(name, t.shape[0], t.shape[1]));
    } else {
      SUBQ_ASSIGN_OR_RETURN(*std::get<Tensor*>(it->second), store.Load(name, t.shape));
    }
  }
  return Status::Ok();
}

Result<FamilyKeys> WriteKeysForFamily(const ModelConfig& cfg) {
  const bool hf_embeddings = cfg.family == "mamba2";
  return KeysForFamily(cfg, [hf_embeddings](const std::string& name) {
    return hf_embeddings && name == "backbone.embeddings.weight";
  });
}

std::vector<std::string> MlpTensorNames(const FamilyKeys& k) {
  if (k.mlp.empty()) return {};
  return {k.mlp + "gate_proj.weight", k.mlp + "up_proj.weight", k.mlp + "down_proj.weight"};
}

namespace {

template <class T>
std::string Render(const T& x) {
  if constexpr (std::is_same_v<T, float>) {
    return fmt::format("{:.9g}", x);
  } else if constexpr (std::is_same_v<T, bool>) {
    return x ? "true" : "false";
  } else if constexpr (std::is_same_v<T, MixerKind>) {
    return MixerKindName(x);
  } else if constexpr (std::is_same_v<T, std::vector<int>>) {
    return fmt::format("[{}]", fmt::join(x, ", "));
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "'" + x + "'";
  } else {
    return fmt::format("{}", x);
  }
}

std::vector<std::pair<std::string, std::string>> Fields(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::string>> out;
  VisitFields(c, [&out](const std::string& name, const auto& value) { out.emplace_back(name, Render(value)); });
  return out;
}

}  // namespace

std::vector<std::string> DescribeFields(const ModelConfig& c) {
  std::vector<std::string> out;
  for (const auto& [k, v] : Fields(c)) out.push_back(k + " = " + v);
  return out;
}

std::vector<std::string> ConfigDiff(const ModelConfig& a, const ModelConfig& b) {
  const auto fa = Fields(a), fb = Fields(b);
  std::vector<std::string> out;
  for (size_t i = 0; i < std::max(fa.size(), fb.size()); ++i) {
    const std::string name = i < fa.size() ? fa[i].first : fb[i].first;
    const std::string va = i < fa.size() ? fa[i].second : "(absent)", vb = i < fb.size() ? fb[i].second : "(absent)";
    if (va != vb || (i < fa.size() && i < fb.size() && fa[i].first != fb[i].first))
      out.push_back(fmt::format("{}: {} != {}", name, va, vb));
  }
  return out;
}

}  // namespace subq
