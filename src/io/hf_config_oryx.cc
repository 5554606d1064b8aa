// subq extension of a Llama config.json for Oryx students (mixers/oryx.h):
//   "oryx_cfg": {"recurrence": "ssd" | "gdn", "default_mode": "recurrent" | "attention",
//                "chunk_size": 64, "layers": [0, 1, ...]}     (layers absent: every layer is Oryx)
// The listed layers become MixerKind::kOryx; their tensors keep the teacher's names under self_attn.
#include "io/hf_config.h"

namespace subq {

Status ParseOryxFields(const nlohmann::json& j, const std::string& path, ModelConfig* cfg) {
  ConfigFields f(j, path);
  const nlohmann::json* o = nullptr;
  SUBQ_RETURN_IF_ERROR(f.Object("oryx_cfg", &o));
  if (o == nullptr) return Status::Ok();
  ConfigFields of(*o, path, "oryx_cfg.");
  OryxConfig& c = cfg->oryx;
  SUBQ_RETURN_IF_ERROR(of.String("recurrence", &c.recurrence));
  if (c.recurrence != "ssd" && c.recurrence != "gdn") return of.Error("recurrence", "must be \"ssd\" or \"gdn\"");
  SUBQ_RETURN_IF_ERROR(of.String("default_mode", &c.default_mode));
  if (c.default_mode != "recurrent" && c.default_mode != "attention")
    return of.Error("default_mode", "must be \"recurrent\" or \"attention\"");
  SUBQ_RETURN_IF_ERROR(of.Int("chunk_size", &c.chunk_size, false, 1, 1 << 16));
  std::vector<int> layers;
  for (int l = 0; l < cfg->n_layers; ++l) layers.push_back(l);
  SUBQ_RETURN_IF_ERROR(of.IntList("layers", &layers, false, 0, cfg->n_layers - 1));
  if (cfg->layers.size() != static_cast<size_t>(cfg->n_layers))
    return Errorf("{}: internal error: oryx_cfg parsed before the layer list", path);
  for (int l : layers) cfg->layers[l].mixer = MixerKind::kOryx;
  return Status::Ok();
}

}  // namespace subq
