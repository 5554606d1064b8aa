// Probe generators (see probes.h for the formats and where they follow goombalab/mohawk).
#include "eval/probes.h"

#include <algorithm>
#include <fstream>
#include <numeric>

namespace subq {

uint64_t ProbeRng::Next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t ProbeRng::Below(uint64_t n) {
  // Rejection of the top partial block: every residue equally likely.
  const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % n);
  uint64_t x = Next();
  while (x >= limit) x = Next();
  return x % n;
}

std::vector<int> ProbeRng::Sample(int n, int k) {
  std::vector<int> all(n);
  std::iota(all.begin(), all.end(), 0);
  for (int i = 0; i < k; ++i) std::swap(all[i], all[i + Below(static_cast<uint64_t>(n - i))]);  // partial Fisher-Yates
  all.resize(k);
  return all;
}

const std::vector<std::string>& ProbeNames() {
  static const std::vector<std::string> names = {"kv-retrieval", "mqar", "parity", "modular"};
  return names;
}

Status ValidateProbeSpec(const ProbeSpec& s) {
  const auto& names = ProbeNames();
  if (std::find(names.begin(), names.end(), s.name) == names.end())
    return Errorf("unknown probe '{}' (known: kv-retrieval, mqar, parity, modular)", s.name);
  constexpr int kValues = 100;  // values are 0..99, distinct within an example (as mohawk)
  const int words = static_cast<int>(ProbeWords().size());
  if (s.name == "kv-retrieval" || s.name == "mqar") {
    if (s.pairs < 1 || s.pairs > std::min(kValues, words))
      return Errorf("--pairs {} is out of range (1..{}: values are distinct numbers 0..99)", s.pairs,
                    std::min(kValues, words));
  }
  if (s.name == "mqar" && (s.queries < 1 || s.queries > s.pairs))
    return Errorf("--queries {} is out of range (1..--pairs = {})", s.queries, s.pairs);
  if ((s.name == "parity" || s.name == "modular") && (s.length < 1 || s.length > 100000))
    return Errorf("--length {} is out of range (1..100000)", s.length);
  if (s.name == "modular" && (s.modulus < 2 || s.modulus > 1000))
    return Errorf("--modulus {} is out of range (2..1000)", s.modulus);
  return Status::Ok();
}

nlohmann::json ProbeSpecJson(const ProbeSpec& s) {
  nlohmann::json j = {{"name", s.name}};
  if (s.name == "kv-retrieval" || s.name == "mqar") j["pairs"] = s.pairs;
  if (s.name == "mqar") j["queries"] = s.queries;
  if (s.name == "parity" || s.name == "modular") j["length"] = s.length;
  if (s.name == "modular") j["modulus"] = s.modulus;
  return j;
}

std::string ProbeExample::Text() const {
  std::string t;
  for (const auto& p : pieces) t += p.text;
  return t;
}

std::vector<std::string> ProbeExample::Answers() const {
  std::vector<std::string> a;
  for (const auto& p : pieces)
    if (p.answer) a.push_back(p.text);
  return a;
}

namespace {

// The dictionary shared by kv-retrieval and mqar: distinct keys, distinct values 0..99.
struct Dictionary {
  std::vector<std::string> keys;
  std::vector<int> values;
  std::string Text() const {
    std::string t = "Memorize the following dictionary:\n";
    for (size_t i = 0; i < keys.size(); ++i) t += (i ? "\n" : "") + keys[i] + ":" + std::to_string(values[i]);
    return t;
  }
};

Dictionary RandomDictionary(int pairs, ProbeRng& rng) {
  Dictionary d;
  for (int w : rng.Sample(static_cast<int>(ProbeWords().size()), pairs)) d.keys.push_back(ProbeWords()[w]);
  d.values = rng.Sample(100, pairs);
  return d;
}

ProbeExample KvRetrieval(const ProbeSpec& s, ProbeRng& rng) {
  const Dictionary d = RandomDictionary(s.pairs, rng);
  const int asked = static_cast<int>(rng.Below(s.pairs));
  return ProbeExample{{{d.Text() + "\nThe value of the key '" + d.keys[asked] + "' is", false},
                       {" " + std::to_string(d.values[asked]), true}}};
}

ProbeExample Mqar(const ProbeSpec& s, ProbeRng& rng) {
  const Dictionary d = RandomDictionary(s.pairs, rng);
  ProbeExample ex;
  std::string context = d.Text() + "\nRecall:";
  for (int q : rng.Sample(s.pairs, s.queries)) {
    ex.pieces.push_back({context + "\n" + d.keys[q] + ":", false});
    ex.pieces.push_back({std::to_string(d.values[q]), true});
    context.clear();
  }
  return ex;
}

ProbeExample ModularSum(int modulus, int length, ProbeRng& rng) {
  std::string t = "Sum mod " + std::to_string(modulus) + ":";
  int sum = 0;
  for (int i = 0; i < length; ++i) {
    const int d = static_cast<int>(rng.Below(modulus));
    sum = (sum + d) % modulus;
    t += " " + std::to_string(d);
  }
  return ProbeExample{{{t + " =", false}, {" " + std::to_string(sum), true}}};
}

}  // namespace

ProbeExample GenerateProbeExample(const ProbeSpec& s, uint64_t seed, int64_t index) {
  // One stream per (seed, index): two rounds of mixing keep nearby seeds and indices unrelated.
  ProbeRng mix(seed);
  ProbeRng rng(mix.Next() ^ (static_cast<uint64_t>(index) * 0xD1B54A32D192ED03ull));
  rng.Next();
  if (s.name == "kv-retrieval") return KvRetrieval(s, rng);
  if (s.name == "mqar") return Mqar(s, rng);
  if (s.name == "parity") return ModularSum(2, s.length, rng);
  return ModularSum(s.modulus, s.length, rng);
}

Result<std::vector<ProbeExample>> GenerateProbe(const ProbeSpec& spec, int64_t n, uint64_t seed) {
  SUBQ_RETURN_IF_ERROR(ValidateProbeSpec(spec));
  if (n < 1 || n > 10'000'000) return Errorf("--n {} is out of range (1..10000000)", n);
  std::vector<ProbeExample> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) out.push_back(GenerateProbeExample(spec, seed, i));
  return out;
}

nlohmann::json ProbeExampleJson(const ProbeSpec& spec, const ProbeExample& ex, int64_t index) {
  nlohmann::json answers = nlohmann::json::array(), spans = nlohmann::json::array();
  size_t at = 0;
  for (const auto& p : ex.pieces) {
    if (p.answer) {
      answers.push_back(p.text);
      spans.push_back({at, at + p.text.size()});
    }
    at += p.text.size();
  }
  return {{"probe", spec.name}, {"index", index}, {"text", ex.Text()}, {"answers", answers}, {"answer_spans", spans}};
}

Result<ProbeExample> ProbeExampleFromJson(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
    return Errorf("not a probe record (a JSON object with a \"text\" string, as `subq data probe` writes)");
  const std::string& text = j["text"].get_ref<const std::string&>();
  ProbeExample ex;
  size_t at = 0;
  if (j.contains("answer_spans")) {
    const nlohmann::json& spans = j["answer_spans"];
    if (!spans.is_array()) return Errorf("\"answer_spans\" is not a list");
    for (const nlohmann::json& sp : spans) {
      if (!sp.is_array() || sp.size() != 2 || !sp[0].is_number_unsigned() || !sp[1].is_number_unsigned())
        return Errorf("an answer span is not a [begin, end] pair of byte offsets");
      const size_t b = sp[0].get<size_t>(), e = sp[1].get<size_t>();
      if (b < at || b >= e || e > text.size())
        return Errorf("answer span [{}, {}) is empty, out of order or outside the text ({} bytes)", b, e, text.size());
      if (b > at) ex.pieces.push_back({text.substr(at, b - at), false});
      ex.pieces.push_back({text.substr(b, e - b), true});
      at = e;
    }
  }
  if (at < text.size()) ex.pieces.push_back({text.substr(at), false});
  return ex;
}

Status WriteProbeJsonl(const ProbeSpec& spec, int64_t n, uint64_t seed, const std::string& path) {
  SUBQ_ASSIGN_OR_RETURN(std::vector<ProbeExample> examples, GenerateProbe(spec, n, seed));
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Errorf("{}: cannot open for writing", path);
  for (int64_t i = 0; i < n; ++i) f << ProbeExampleJson(spec, examples[i], i).dump() << '\n';
  f.flush();
  if (!f) return Errorf("{}: write failed (disk full?)", path);
  return Status::Ok();
}

}  // namespace subq
