#include "glue.h"

#include <algorithm>

#include <nanobind/stl/string.h>

#include "model/sampler.h"
#include "serve/engine.h"

namespace subq::py {

Workspace& PyModel::Ws(int tokens) {
  const int want = std::clamp(tokens, 1, 512);
  if (!ws || ws->max_tokens() < want) ws = std::make_unique<Workspace>(*lm.model, want, threads);
  return *ws;
}

nanobind::dict PyModel::ConfigDict() const {
  const ModelConfig& c = lm.model->config();
  nanobind::dict d;
  d["family"] = c.family;
  d["vocab_size"] = c.vocab_size;
  d["dim"] = c.dim;
  d["hidden_dim"] = c.hidden_dim;
  d["n_layers"] = c.n_layers;
  d["max_seq_len"] = c.max_seq_len;
  d["bos_id"] = c.bos_id;
  d["eos_id"] = c.eos_id;
  nanobind::list mixers;
  for (const LayerConfig& l : c.layers) mixers.append(std::string(MixerKindName(l.mixer)));
  d["mixers"] = mixers;
  return d;
}

std::string PyTokenizer::Decode(const std::vector<int>& ids) const {
  for (int t : ids)
    if (t < 0 || t >= tok->vocab_size())
      Throw(Errorf("decode: token id {} outside the tokenizer's vocabulary (0..{})", t, tok->vocab_size() - 1));
  return tok->Decode(ids);
}

std::vector<std::tuple<std::string, std::vector<int>, std::string>> Generate(
    const PyModel& m, const std::vector<std::vector<int>>& prompts, int max_tokens, float temperature, float top_p,
    int top_k, uint64_t seed, const std::vector<std::string>& stop, int max_batch) {
  const Model& model = *m.lm.model;
  SamplerConfig sc{temperature, top_k, top_p, seed};
  Check(ValidateSamplerConfig(sc));
  if (max_tokens < 0) Throw(Errorf("generate: max_tokens must be >= 0, got {}", max_tokens));
  if (max_batch < 1) Throw(Errorf("generate: max_batch must be >= 1, got {}", max_batch));
  const int V = model.config().vocab_size;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) Throw(Errorf("generate: prompt {} has no tokens", i));
    for (int t : prompts[i])
      if (t < 0 || t >= V) Throw(Errorf("generate: prompt {}: token id {} outside the vocabulary (0..{})", i, t, V - 1));
    if (static_cast<int64_t>(prompts[i].size()) >= model.context_limit())
      Throw(Errorf("generate: prompt {} is {} tokens, at or past the model's context limit of {}", i, prompts[i].size(),
                   model.context_limit()));
  }
  std::vector<std::tuple<std::string, std::vector<int>, std::string>> out(prompts.size());
  if (prompts.empty() || max_tokens == 0) {
    for (auto& o : out) std::get<2>(o) = "length";
    return out;
  }
  serve::EngineOptions eo;
  eo.max_batch = std::min<int>(max_batch, static_cast<int>(prompts.size()));
  eo.max_queue = static_cast<int>(prompts.size()) + 1;
  eo.cache_bytes = 0;
  eo.threads = m.threads.n;
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
  eo.max_context = static_cast<int>(std::min<int64_t>(longest + max_tokens, model.context_limit()));
  serve::Engine engine(model, nullptr, *m.lm.tokenizer, eo);
  serve::GenParams gp;
  gp.max_tokens = max_tokens;
  gp.sampler = sc;
  gp.stop = stop;
  std::vector<std::shared_ptr<serve::Request>> reqs;
  for (const auto& p : prompts) {
    reqs.push_back(std::make_shared<serve::Request>(p, gp, 1));
    if (engine.Submit(reqs.back()) != serve::Engine::Admission::kQueued) Throw(Errorf("generate: engine refused a request"));
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto& [text, tokens, finish] = out[i];
    while (finish.empty()) {
      auto e = reqs[i]->Pop(1000);
      if (!e) continue;
      if (!e->error.empty()) Throw(Errorf("generate: {}", e->error));
      text += e->text;
      tokens.insert(tokens.end(), e->tokens.begin(), e->tokens.end());
      if (!e->finish.empty()) finish = e->finish;
    }
  }
  engine.Shutdown();
  return out;
}

}  // namespace subq::py
