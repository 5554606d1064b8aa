#include "eval/continuation_scoring.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

namespace subq {
namespace {

// One request in flight: feed = context ++ continuation[:-1]; logits of feed position p (p >= ctx - 1)
// predict continuation[p - (ctx - 1)].
struct InFlight {
  size_t index = 0;
  SequenceState state;
  std::vector<int> feed;
  int ctx = 0;
  int fed = 0;
};

// log p(target) and whether target is the argmax, from one row of logits [V].
std::pair<float, bool> TokenLogprob(const float* row, int V, int target) {
  const float mx = *std::max_element(row, row + V);
  double sum = 0.0;
  for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
  const double lse = mx + std::log(sum);
  // argmax ties resolve to the lowest id, as torch.argmax does
  const int best = static_cast<int>(std::max_element(row, row + V) - row);
  return {static_cast<float>(row[target] - lse), best == target};
}

// Characters of a UTF-8 string (Python's len of the decoded str, which lm-eval's acc_norm divides by); >= 1.
double CodePoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return static_cast<double>(std::max<size_t>(n, 1));
}

}  // namespace

ContinuationRequest EncodeContinuationPair(const Tokenizer& tok, const std::string& context,
                                           const std::string& continuation, bool add_bos) {
  std::string ctx = context, cont = continuation;
  const size_t keep = ctx.find_last_not_of(" \t\n\r\f\v");
  const size_t cut = keep == std::string::npos ? 0 : keep + 1;
  cont = ctx.substr(cut) + cont;
  ctx.resize(cut);
  ContinuationRequest r;
  if (ctx.empty()) {
    if (add_bos) r.context = {tok.bos_id()};
    r.continuation = tok.Encode(cont, false);
    return r;
  }
  std::vector<int> whole = tok.Encode(ctx + cont, add_bos);
  r.context = tok.Encode(ctx, add_bos);
  const size_t n = std::min(r.context.size(), whole.size());
  r.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(n), whole.end());
  return r;
}

Result<std::vector<ContinuationScore>> ScoreContinuations(const Model& model,
                                                          const std::vector<ContinuationRequest>& requests,
                                                          const ScoringOptions& opt,
                                                          const std::function<void(size_t, size_t)>& progress) {
  const int V = model.config().vocab_size;
  if (opt.batch_tokens < 1 || opt.max_sequences < 1) return Errorf("scoring: batch_tokens and max_sequences must be >= 1");
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    if (r.context.empty()) return Errorf("request {}: the context has no tokens (give at least BOS)", i);
    if (r.continuation.empty()) return Errorf("request {}: the continuation has no tokens", i);
    const int64_t n = static_cast<int64_t>(r.context.size()) + static_cast<int64_t>(r.continuation.size()) - 1;
    if (n > model.context_limit())
      return Errorf("request {}: {} tokens exceed the model's context limit of {}", i, n, model.context_limit());
  }
  std::vector<ContinuationScore> out(requests.size());
  Workspace ws(model, opt.batch_tokens, opt.threads);
  std::vector<float> logits(static_cast<size_t>(opt.batch_tokens) * V);
  std::vector<std::unique_ptr<InFlight>> active;
  size_t next = 0, done = 0;
  std::vector<SeqInput> batch;
  std::vector<InFlight*> owner;  // per batch entry
  std::vector<size_t> first_row;  // per batch entry: first logits row
  while (done < requests.size()) {
    while (next < requests.size() && static_cast<int>(active.size()) < opt.max_sequences) {
      const auto& r = requests[next];
      auto f = std::make_unique<InFlight>();
      f->index = next++;
      f->ctx = static_cast<int>(r.context.size());
      f->feed = r.context;
      f->feed.insert(f->feed.end(), r.continuation.begin(), r.continuation.end() - 1);
      SUBQ_ASSIGN_OR_RETURN(f->state, model.NewSequence(model.has_attention() ? static_cast<int>(f->feed.size()) : 0));
      out[f->index].token_logprobs.reserve(r.continuation.size());
      active.push_back(std::move(f));
    }
    batch.clear(), owner.clear(), first_row.clear();
    int budget = opt.batch_tokens;
    size_t row = 0;
    for (auto& f : active) {
      if (budget <= 0) break;
      const int left = static_cast<int>(f->feed.size()) - f->fed;
      const bool prefix = f->fed < f->ctx - 1;  // context tokens whose logits are not needed
      const int n = std::min({left, budget, prefix ? f->ctx - 1 - f->fed : left});
      batch.push_back(SeqInput{f->feed.data() + f->fed, n, &f->state, logits.data() + row * V, !prefix});
      owner.push_back(f.get());
      first_row.push_back(row);
      row += prefix ? 1 : static_cast<size_t>(n);
      budget -= n;
    }
    SUBQ_RETURN_IF_ERROR(model.Forward(batch, ws));
    for (size_t b = 0; b < batch.size(); ++b) {
      InFlight& f = *owner[b];
      if (batch[b].all_logits) {
        const auto& cont = requests[f.index].continuation;
        ContinuationScore& sc = out[f.index];
        for (int t = 0; t < batch[b].n; ++t) {
          const int target = cont[f.fed + t - (f.ctx - 1)];
          const auto [lp, greedy] = TokenLogprob(logits.data() + (first_row[b] + t) * V, V, target);
          sc.token_logprobs.push_back(lp);
          sc.logprob += lp;
          sc.greedy = sc.greedy && greedy;
        }
      }
      f.fed += batch[b].n;
    }
    const size_t before = active.size();
    std::erase_if(active, [](const std::unique_ptr<InFlight>& f) { return f->fed == static_cast<int>(f->feed.size()); });
    done += before - active.size();
    if (progress && before != active.size()) progress(done, requests.size());
  }
  return out;
}

Result<std::vector<ChoiceItem>> ReadChoiceJsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Errorf("{}: cannot open", path);
  std::vector<ChoiceItem> items;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return Errorf("{}:{}: not JSON: {}", path, n, e.what());
    }
    ChoiceItem it;
    if (!j.is_object() || !j.contains("context") || !j["context"].is_string() || !j.contains("endings") ||
        !j["endings"].is_array() || j["endings"].empty() || !j.contains("label") || !j["label"].is_number_integer())
      return Errorf("{}:{}: expected {{\"context\": string, \"endings\": [strings], \"label\": integer}}", path, n);
    it.context = j["context"].get<std::string>();
    for (const auto& e : j["endings"]) {
      if (!e.is_string()) return Errorf("{}:{}: every ending must be a string", path, n);
      it.endings.push_back(e.get<std::string>());
    }
    it.label = j["label"].get<int>();
    if (it.label < 0 || it.label >= static_cast<int>(it.endings.size()))
      return Errorf("{}:{}: label {} is not an ending index (0..{})", path, n, it.label, it.endings.size() - 1);
    items.push_back(std::move(it));
  }
  if (items.empty()) return Errorf("{}: no items", path);
  return items;
}

Result<ChoiceAccuracy> ScoreChoices(const Model& model, const Tokenizer& tok, const std::vector<ChoiceItem>& items,
                                    const std::string& delimiter, const ScoringOptions& opt) {
  std::vector<ContinuationRequest> reqs;
  for (const auto& it : items)
    for (const auto& e : it.endings) reqs.push_back(EncodeContinuationPair(tok, it.context, delimiter + e, true));
  SUBQ_ASSIGN_OR_RETURN(std::vector<ContinuationScore> scores, ScoreContinuations(model, reqs, opt));
  return ChoiceAccuracyFromScores(items, scores);
}

Result<ChoiceAccuracy> ChoiceAccuracyFromScores(const std::vector<ChoiceItem>& items,
                                                const std::vector<ContinuationScore>& scores) {
  size_t total = 0;
  for (const auto& it : items) total += it.endings.size();
  if (total != scores.size()) return Errorf("choice accuracy: {} scores for {} endings", scores.size(), total);
  ChoiceAccuracy a;
  size_t k = 0;
  for (const auto& it : items) {
    if (it.endings.empty()) return Errorf("choice item {} has no endings", a.items);
    if (it.label < 0 || it.label >= static_cast<int>(it.endings.size()))
      return Errorf("choice item {}: label {} is not an ending index (0..{})", a.items, it.label, it.endings.size() - 1);
    int best = 0, best_norm = 0;
    for (size_t e = 0; e < it.endings.size(); ++e) {
      const double lp = scores[k + e].logprob;
      if (lp > scores[k + best].logprob) best = static_cast<int>(e);
      if (lp / CodePoints(it.endings[e]) > scores[k + best_norm].logprob / CodePoints(it.endings[best_norm]))
        best_norm = static_cast<int>(e);
    }
    a.acc += best == it.label;
    a.acc_norm += best_norm == it.label;
    k += it.endings.size();
    ++a.items;
  }
  if (a.items > 0) a.acc /= a.items, a.acc_norm /= a.items;
  return a;
}

}  // namespace subq
