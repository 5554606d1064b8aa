// Probe generators: deterministic, in the documented formats (parsed back and checked), with bad
// specs refused; the Wilson interval against published values.
#include "eval/probes.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

#include "eval/probe_score.h"

namespace subq {
namespace {

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

std::vector<std::string> Texts(const ProbeSpec& spec, int n, uint64_t seed) {
  std::vector<std::string> t;
  const std::vector<ProbeExample> examples = GenerateProbe(spec, n, seed).value();
  for (const auto& ex : examples) t.push_back(ex.Text());
  return t;
}

TEST(Probes, GeneratorsAreDeterministicAndIndependentOfN) {
  for (const std::string& name : ProbeNames()) {
    ProbeSpec spec;
    spec.name = name;
    const auto a = Texts(spec, 20, 7), b = Texts(spec, 20, 7), c = Texts(spec, 10, 7), d = Texts(spec, 20, 8);
    EXPECT_EQ(a, b) << name;
    EXPECT_EQ(std::vector<std::string>(a.begin(), a.begin() + 10), c) << name;
    EXPECT_NE(a, d) << name;
    EXPECT_GT(std::set<std::string>(a.begin(), a.end()).size(), 15u) << name << ": examples repeat";
  }
}

// The same examples on every platform and standard library: examples and the RNG are pinned.
TEST(Probes, ExamplesArePinned) {
  ProbeSpec parity;
  parity.name = "parity", parity.length = 8;
  EXPECT_EQ(GenerateProbeExample(parity, 0, 0).Text(), "Sum mod 2: 0 1 0 1 1 0 0 1 = 0");
  ProbeSpec kv;
  kv.pairs = 3;
  EXPECT_EQ(GenerateProbeExample(kv, 1, 1).Text(),
            "Memorize the following dictionary:\nmountain:65\npond:21\nfox:0\nThe value of the key 'pond' is 21");
  EXPECT_EQ(ProbeRng(42).Next(), 0xbdd732262feb6e95ull);  // splitmix64's reference output for seed 42
  EXPECT_EQ(ProbeRng(0).Next(), 0xe220a8397b1dcdafull);   // and for seed 0
}

TEST(Probes, KvRetrievalFollowsTheMohawkFormat) {
  ProbeSpec spec;
  spec.pairs = 20;
  const std::vector<ProbeExample> examples = GenerateProbe(spec, 50, 3).value();
  for (const ProbeExample& ex : examples) {
    ASSERT_EQ(ex.pieces.size(), 2u);
    EXPECT_TRUE(ex.pieces[1].answer);
    const std::vector<std::string> lines = Lines(ex.Text());
    ASSERT_EQ(lines.size(), 22u);
    EXPECT_EQ(lines[0], "Memorize the following dictionary:");
    std::map<std::string, int> dict;
    std::set<int> values;
    for (int i = 1; i <= 20; ++i) {
      const size_t colon = lines[i].find(':');
      ASSERT_NE(colon, std::string::npos) << lines[i];
      const int v = std::stoi(lines[i].substr(colon + 1));
      EXPECT_TRUE(v >= 0 && v < 100);
      dict[lines[i].substr(0, colon)] = v;
      values.insert(v);
    }
    EXPECT_EQ(dict.size(), 20u) << "keys repeat";
    EXPECT_EQ(values.size(), 20u) << "values repeat";
    const std::string& q = lines[21];
    const std::string head = "The value of the key '";
    ASSERT_EQ(q.rfind(head, 0), 0u) << q;
    const std::string key = q.substr(head.size(), q.find('\'', head.size()) - head.size());
    ASSERT_TRUE(dict.count(key)) << key;
    EXPECT_EQ(q, head + key + "' is " + std::to_string(dict[key]));
    EXPECT_EQ(ex.pieces[1].text, " " + std::to_string(dict[key]));
  }
}

TEST(Probes, MqarAsksDistinctKeysOfTheDictionary) {
  ProbeSpec spec;
  spec.name = "mqar", spec.pairs = 12, spec.queries = 5;
  const std::vector<ProbeExample> examples = GenerateProbe(spec, 30, 1).value();
  for (const ProbeExample& ex : examples) {
    const std::vector<std::string> lines = Lines(ex.Text());
    ASSERT_EQ(lines.size(), 1u + 12 + 1 + 5);
    EXPECT_EQ(lines[13], "Recall:");
    std::map<std::string, std::string> dict;
    for (int i = 1; i <= 12; ++i) dict[lines[i].substr(0, lines[i].find(':'))] = lines[i].substr(lines[i].find(':') + 1);
    std::set<std::string> asked;
    const std::vector<std::string> answers = ex.Answers();
    ASSERT_EQ(answers.size(), 5u);
    for (int q = 0; q < 5; ++q) {
      const std::string& l = lines[14 + q];
      const std::string key = l.substr(0, l.find(':'));
      ASSERT_TRUE(dict.count(key)) << l;
      EXPECT_EQ(l, key + ":" + dict[key]);
      EXPECT_EQ(answers[q], dict[key]);
      asked.insert(key);
    }
    EXPECT_EQ(asked.size(), 5u);
  }
}

TEST(Probes, ModularAnswersAreTheSumModM) {
  for (auto [name, modulus] : {std::pair{"parity", 2}, std::pair{"modular", 7}}) {
    ProbeSpec spec;
    spec.name = name, spec.modulus = modulus, spec.length = 11;
    std::set<std::string> seen;
    const std::vector<ProbeExample> examples = GenerateProbe(spec, 60, 5).value();
    for (const ProbeExample& ex : examples) {
      std::stringstream ss(ex.pieces[0].text);
      std::string word;
      ss >> word >> word >> word;  // "Sum" "mod" "M:"
      EXPECT_EQ(word, std::to_string(modulus) + ":");
      int sum = 0, terms = 0;
      for (std::string d; ss >> d && d != "=";) {
        const int v = std::stoi(d);
        EXPECT_TRUE(v >= 0 && v < modulus);
        sum += v, ++terms;
      }
      EXPECT_EQ(terms, 11);
      EXPECT_EQ(ex.pieces[1].text, " " + std::to_string(sum % modulus));
      seen.insert(ex.pieces[1].text);
    }
    EXPECT_EQ(static_cast<int>(seen.size()), modulus) << name << ": some answers never occur";
  }
}

TEST(Probes, BadSpecsAreRefusedWithTheFieldNamed) {
  auto err = [](ProbeSpec s, int64_t n = 10) { return GenerateProbe(s, n, 0).status().message(); };
  ProbeSpec s;
  s.name = "copying";
  EXPECT_NE(err(s).find("unknown probe 'copying'"), std::string::npos);
  s = ProbeSpec{};
  s.pairs = 0;
  EXPECT_NE(err(s).find("--pairs 0"), std::string::npos);
  s.pairs = 101;
  EXPECT_NE(err(s).find("--pairs 101"), std::string::npos);
  s = ProbeSpec{};
  s.name = "mqar", s.pairs = 4, s.queries = 5;
  EXPECT_NE(err(s).find("--queries 5"), std::string::npos);
  s = ProbeSpec{};
  s.name = "modular", s.modulus = 1;
  EXPECT_NE(err(s).find("--modulus 1"), std::string::npos);
  s.name = "parity", s.length = 0;
  EXPECT_NE(err(s).find("--length 0"), std::string::npos);
  EXPECT_NE(err(ProbeSpec{}, 0).find("--n 0"), std::string::npos);
}

TEST(Probes, JsonRecordsLocateTheAnswers) {
  ProbeSpec spec;
  spec.name = "mqar";
  const ProbeExample ex = GenerateProbeExample(spec, 2, 9);
  const nlohmann::json j = ProbeExampleJson(spec, ex, 9);
  EXPECT_EQ(j["probe"], "mqar");
  EXPECT_EQ(j["index"], 9);
  const std::string text = j["text"];
  ASSERT_EQ(j["answers"].size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    const size_t b = j["answer_spans"][i][0], e = j["answer_spans"][i][1];
    EXPECT_EQ(text.substr(b, e - b), j["answers"][i].get<std::string>());
  }
}

TEST(Probes, JsonRecordsReadBackIntoTheSamePieces) {
  ProbeSpec spec;
  spec.name = "kv-retrieval";
  spec.pairs = 6;
  for (int64_t i = 0; i < 5; ++i) {
    const ProbeExample ex = GenerateProbeExample(spec, 7, i);
    auto back = ProbeExampleFromJson(ProbeExampleJson(spec, ex, i));
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->Text(), ex.Text());
    EXPECT_EQ(back->Answers(), ex.Answers());
    ASSERT_FALSE(back->pieces.empty());
    EXPECT_TRUE(back->pieces.back().answer);  // kv-retrieval ends on its answer
  }
  // No spans: one context piece. Bad records are refused with the reason.
  auto plain = ProbeExampleFromJson(nlohmann::json{{"text", "hello"}});
  ASSERT_TRUE(plain.ok());
  ASSERT_EQ(plain->pieces.size(), 1u);
  EXPECT_FALSE(plain->pieces[0].answer);
  const std::pair<const char*, std::string> bad[] = {
      {R"({"txt": "x"})", "not a probe record"},
      {R"({"text": "abc", "answer_spans": 3})", "not a list"},
      {R"({"text": "abc", "answer_spans": [[1]]})", "pair of byte offsets"},
      {R"({"text": "abc", "answer_spans": [[1, 9]]})", "outside the text"},
      {R"({"text": "abcdef", "answer_spans": [[2, 4], [3, 5]]})", "out of order"},
  };
  for (const auto& [j, msg] : bad) {
    auto r = ProbeExampleFromJson(nlohmann::json::parse(j));
    ASSERT_FALSE(r.ok()) << j;
    EXPECT_NE(r.status().message().find(msg), std::string::npos) << r.status().message();
  }
}

TEST(Probes, WilsonIntervalMatchesPublishedValues) {
  Interval a = WilsonInterval(0, 10), b = WilsonInterval(5, 10), c = WilsonInterval(3, 100);
  EXPECT_NEAR(a.low, 0.0, 1e-12);
  EXPECT_NEAR(a.high, 0.2775, 1e-4);
  EXPECT_NEAR(b.low, 0.2366, 1e-4);
  EXPECT_NEAR(b.high, 0.7634, 1e-4);
  EXPECT_NEAR(c.low, 0.0103, 1e-4);
  EXPECT_NEAR(c.high, 0.0845, 1e-4);
  EXPECT_NEAR(WilsonInterval(100, 100).high, 1.0, 1e-12);
  EXPECT_EQ(WilsonInterval(0, 0).high, 1.0);
}

}  // namespace
}  // namespace subq
