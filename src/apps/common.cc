#include "apps/common.h"

#include <cstdio>
#include <sstream>

namespace subq {

void AddStateDtypeOption(CLI::App* c, std::string* state_dtype) {
  c->add_option("--state-dtype", *state_dtype, "recurrent state precision (compute stays f32)")
      ->check(CLI::IsMember({"f32", "bf16"}));
}

Result<LoadedModel> LoadModel(const std::string& model_path, const std::string& tokenizer_path, bool load_tokenizer,
                              int chunk, const std::string& state_dtype) {
  LoadedModel lm;
  SUBQ_ASSIGN_OR_RETURN(Checkpoint ck, ReadCheckpoint(model_path));
  lm.ckpt = std::make_unique<Checkpoint>(std::move(ck));
  if (state_dtype != "f32" && state_dtype != "bf16") return Errorf("--state-dtype must be f32 or bf16");
  lm.ckpt->config.bf16_state = state_dtype == "bf16";
  if (chunk > 0) {
    ModelConfig& c = lm.ckpt->config;
    c.mamba2.chunk_size = c.dm2.chunk_size = c.mamba3.chunk_size = c.gdn.chunk_size = chunk;
  }
  SUBQ_ASSIGN_OR_RETURN(lm.model, Model::FromCheckpoint(*lm.ckpt));
  if (load_tokenizer) {
    if (!tokenizer_path.empty()) {
      SUBQ_ASSIGN_OR_RETURN(lm.tokenizer, LoadTokenizer(tokenizer_path));
    } else {
      SUBQ_ASSIGN_OR_RETURN(lm.tokenizer, TokenizerForCheckpoint(*lm.ckpt));
    }
    const int tv = lm.tokenizer->vocab_size(), mv = lm.model->config().vocab_size;
    if (tv > mv)
      return Errorf("{}: tokenizer has {} tokens but model {} has a vocabulary of {}", lm.tokenizer->name(), tv,
                    model_path, mv);
  }
  return lm;
}

int ReportError(const Status& s) {
  std::fprintf(stderr, "subq: error: %s\n", s.message().c_str());
  return 1;
}

Result<std::vector<int>> ParseIds(const std::string& s) {
  std::vector<int> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t used = 0;
      int v = std::stoi(item, &used);
      if (used != item.size()) return Errorf("bad token id '{}'", item);
      ids.push_back(v);
    } catch (const std::exception&) {
      return Errorf("bad token id '{}'", item);
    }
  }
  if (ids.empty()) return Errorf("no token ids given");
  return ids;
}

}  // namespace subq
