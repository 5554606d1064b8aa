// libFuzzer target: config.json text -> ParseHfConfig, and the hybrid-layer fields on a fixed base.
#include <nlohmann/json.hpp>

#include "io/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  subq::ModelConfig cfg;
  (void)subq::ParseHfConfig(j, "config.json", &cfg);
  subq::ModelConfig base;
  base.dim = 64;
  base.n_layers = 4;
  (void)subq::ParseHybridFields(j, "config.json", subq::MixerKind::kMamba2, &base);
  return 0;
}
