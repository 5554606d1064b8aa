// libFuzzer target: recipe YAML text -> ParseRecipe (yaml-cpp, then every key checked), with and
// without a dotted override taken from the input's first line.
#include <string>

#include "train/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  (void)subq::train::ParseRecipe(yaml, "recipe.yaml", ".");
  const std::string first = yaml.substr(0, yaml.find('\n'));
  if (first.find('=') != std::string::npos) (void)subq::train::ParseRecipe(yaml, "recipe.yaml", ".", {first});
  return 0;
}
