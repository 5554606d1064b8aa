// Exact-match scoring of probe answers (see probe_score.h).
#include "eval/probe_score.h"

#include <algorithm>
#include <climits>
#include <cmath>

namespace subq {

namespace {

bool IsPrefix(const std::vector<int>& a, const std::vector<int>& b) {
  return a.size() <= b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// A stretch of an example fed in one Forward call: scored runs keep every row's logits.
struct Run {
  int begin = 0, n = 0;
  bool scored = false;
};

// Feeds tokens [0, last answer end - 1): position p's logits predict token p + 1, so answer [b, e) needs
// the logits of positions b-1 .. e-2. Runs alternate between unscored and scored positions.
std::vector<Run> RunsOf(const TokenizedProbe& p) {
  const int fed = p.answers.back().second - 1;
  std::vector<uint8_t> scored(fed, 0);
  for (const auto& [b, e] : p.answers)
    for (int t = b - 1; t < e - 1; ++t) scored[t] = 1;
  std::vector<Run> runs;
  for (int t = 0; t < fed; ++t) {
    if (runs.empty() || runs.back().scored != static_cast<bool>(scored[t])) runs.push_back({t, 0, scored[t] != 0});
    ++runs.back().n;
  }
  return runs;
}

int FedTokens(const TokenizedProbe& p) { return p.answers.empty() ? 0 : p.answers.back().second - 1; }

Status CheckProbe(const TokenizedProbe& p, size_t index, const Model& model, const Workspace& ws) {
  if (p.answers.empty()) return Errorf("probe example {}: no answer to score", index);
  int prev_end = 1;
  for (const auto& [b, e] : p.answers) {
    if (b < prev_end || e <= b || e > static_cast<int>(p.tokens.size()))
      return Errorf("probe example {}: answer tokens [{}, {}) are empty, overlap or lie outside its {} tokens",
                    index, b, e, p.tokens.size());
    prev_end = e;
  }
  const int fed = FedTokens(p);
  if (fed > model.context_limit())
    return Errorf("probe example {} is {} tokens, beyond the model's context limit of {} (use fewer --pairs, "
                  "--queries or a shorter --length)", index, fed, model.context_limit());
  if (fed > ws.max_tokens())
    return Errorf("probe example {} is {} tokens, more than the workspace's {} rows per call", index, fed,
                  ws.max_tokens());
  return Status::Ok();
}

}  // namespace

Result<TokenizedProbe> TokenizeProbe(const ProbeExample& ex, const Tokenizer& tok) {
  TokenizedProbe out;
  const std::string text = ex.Text();
  out.tokens = tok.Encode(text, true);
  std::string prefix;
  for (const ProbePiece& piece : ex.pieces) {
    if (piece.answer) {
      const std::vector<int> before = tok.Encode(prefix, true), after = tok.Encode(prefix + piece.text, true);
      if (!IsPrefix(before, after) || !IsPrefix(after, out.tokens) || after.size() == before.size())
        return Errorf("{}: the tokens of answer '{}' are not separable from the text around it (the tokenizer "
                      "merges across the answer boundary); cannot score it", tok.name(), piece.text);
      out.answers.emplace_back(static_cast<int>(before.size()), static_cast<int>(after.size()));
    }
    prefix += piece.text;
  }
  return out;
}

Result<std::vector<TokenizedProbe>> TokenizeProbes(const std::vector<ProbeExample>& examples, const Tokenizer& tok) {
  std::vector<TokenizedProbe> out;
  out.reserve(examples.size());
  for (const auto& ex : examples) {
    SUBQ_ASSIGN_OR_RETURN(TokenizedProbe t, TokenizeProbe(ex, tok));
    out.push_back(std::move(t));
  }
  return out;
}

Interval WilsonInterval(int64_t k, int64_t n, double z) {
  if (n <= 0) return {0.0, 1.0};
  const double p = static_cast<double>(k) / n, z2 = z * z, denom = 1.0 + z2 / n;
  const double centre = (p + z2 / (2.0 * n)) / denom;
  const double half = z * std::sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom;
  // The bounds are exact at the ends (k = 0, k = n); the formula leaves rounding residue there.
  return {k == 0 ? 0.0 : std::max(0.0, centre - half), k == n ? 1.0 : std::min(1.0, centre + half)};
}

int ProbeWorkspaceTokens(const std::vector<TokenizedProbe>& probes, int batch_tokens) {
  int longest = 1;
  for (const auto& p : probes) longest = std::max(longest, FedTokens(p));
  return std::max(batch_tokens, longest);
}

// Recurrent mode everywhere but [answer begin - before, answer end) of every answer (positions of the
// predicting tokens: the answer token at t is predicted at position t - 1).
ModeSchedule AttentionAroundAnswers(const TokenizedProbe& p, int before) {
  ModeSchedule m;
  int at = 0;
  for (const auto& [b, e] : p.answers) {
    const int lo = std::max(at, b - 1 - before), hi = e - 1;
    if (lo > at) m.spans.push_back({at, lo, MixerMode::kRecurrent});
    if (hi > lo) m.spans.push_back({lo, hi, MixerMode::kAttention});
    at = std::max(at, hi);
  }
  m.spans.push_back({at, INT_MAX, MixerMode::kRecurrent});
  return m;
}

Result<ProbeResult> ScoreProbe(const Model& model, const std::vector<TokenizedProbe>& probes, Workspace& ws,
                               int attention_before_answer) {
  if (probes.empty()) return Errorf("no probe examples to score");
  const auto& layers = model.config().layers;
  if (attention_before_answer >= 0 &&
      std::none_of(layers.begin(), layers.end(), [](const LayerConfig& l) { return l.mixer == MixerKind::kOryx; }))
    return Errorf("attention around answers needs an Oryx model (layers with both an attention and a recurrent mode)");
  for (size_t i = 0; i < probes.size(); ++i) SUBQ_RETURN_IF_ERROR(CheckProbe(probes[i], i, model, ws));
  const int V = model.config().vocab_size;
  ProbeResult r;
  if (attention_before_answer >= 0) r.attention_tokens = 0;
  double nll = 0.0;
  std::vector<float> logits;
  for (size_t g0 = 0; g0 < probes.size();) {
    // A group: consecutive examples whose fed tokens fit one call together.
    size_t g1 = g0;
    int group_tokens = 0;
    while (g1 < probes.size() && (g1 == g0 || group_tokens + FedTokens(probes[g1]) <= ws.max_tokens()))
      group_tokens += FedTokens(probes[g1++]);
    const size_t G = g1 - g0;
    std::vector<std::vector<Run>> runs(G);
    std::vector<SequenceState> states;
    std::vector<std::vector<int>> predicted(G);
    size_t max_runs = 0;
    for (size_t i = 0; i < G; ++i) {
      const TokenizedProbe& p = probes[g0 + i];
      runs[i] = RunsOf(p);
      max_runs = std::max(max_runs, runs[i].size());
      SUBQ_ASSIGN_OR_RETURN(SequenceState s, model.NewSequence(FedTokens(p)));
      if (attention_before_answer >= 0) {
        s.modes = AttentionAroundAnswers(p, attention_before_answer);
        r.attention_tokens += s.modes.Count(MixerMode::kAttention, 0, FedTokens(p), MixerMode::kRecurrent);
      }
      states.push_back(std::move(s));
      predicted[i].assign(p.tokens.size(), -1);
    }
    // Call k carries run k of every example that has one.
    for (size_t k = 0; k < max_runs; ++k) {
      std::vector<SeqInput> batch;
      std::vector<size_t> member, row0;
      size_t rows = 0;
      for (size_t i = 0; i < G; ++i) {
        if (k >= runs[i].size()) continue;
        member.push_back(i);
        row0.push_back(rows);
        rows += runs[i][k].scored ? runs[i][k].n : 1;
      }
      if (logits.size() < rows * V) logits.resize(rows * V);
      for (size_t m = 0; m < member.size(); ++m) {
        const Run& run = runs[member[m]][k];
        batch.push_back(SeqInput{probes[g0 + member[m]].tokens.data() + run.begin, run.n, &states[member[m]],
                                 logits.data() + row0[m] * V, run.scored});
        r.tokens_fed += run.n;
      }
      SUBQ_RETURN_IF_ERROR(model.Forward(batch, ws));
      for (size_t m = 0; m < member.size(); ++m) {
        const Run& run = runs[member[m]][k];
        if (!run.scored) continue;
        const std::vector<int>& tokens = probes[g0 + member[m]].tokens;
        for (int j = 0; j < run.n; ++j) {
          const float* row = logits.data() + (row0[m] + j) * V;  // [V]: predicts token begin + j + 1
          const int target = tokens[run.begin + j + 1];
          const float* top = std::max_element(row, row + V);  // greedy: the first maximum, as the sampler
          if (!std::isfinite(*top)) return Errorf("the model produced a non-finite logit while scoring the probe");
          double sum = 0.0;
          for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v] - *top));
          nll += std::log(sum) + *top - row[target];
          predicted[member[m]][run.begin + j + 1] = static_cast<int>(top - row);
        }
      }
    }
    for (size_t i = 0; i < G; ++i) {
      const TokenizedProbe& p = probes[g0 + i];
      bool all = true;
      for (const auto& [b, e] : p.answers) {
        bool ok = true;
        for (int t = b; t < e; ++t) {
          ok = ok && predicted[i][t] == p.tokens[t];
          r.predicted.push_back(predicted[i][t]);
        }
        r.correct.push_back(ok);
        r.answers_correct += ok;
        r.answer_tokens += e - b;
        all = all && ok;
      }
      r.answers += static_cast<int64_t>(p.answers.size());
      r.examples_correct += all;
    }
    r.examples += static_cast<int64_t>(G);
    g0 = g1;
  }
  r.answer_nll = nll / static_cast<double>(r.answer_tokens);
  return r;
}

nlohmann::json ProbeResultJson(const ProbeResult& r) {
  const Interval ci = r.ci95();
  nlohmann::json j = {{"accuracy", r.accuracy()},         {"ci95", {ci.low, ci.high}},
          {"answers", r.answers},             {"answers_correct", r.answers_correct},
          {"examples", r.examples},           {"examples_correct", r.examples_correct},
          {"answer_tokens", r.answer_tokens}, {"answer_nll", r.answer_nll},
          {"tokens", r.tokens_fed}};
  if (r.attention_tokens >= 0) {
    j["attention_tokens"] = r.attention_tokens;
    j["attention_fraction"] = static_cast<double>(r.attention_tokens) / std::max<int64_t>(r.tokens_fed, 1);
  }
  return j;
}

}  // namespace subq
