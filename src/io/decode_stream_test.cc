// DecodeStream on the real tokenizers: the streamed text equals the whole-sequence decode (plain text,
// byte-fallback pieces, multi-byte UTF-8 split across tokens, random id sequences, prompts cut at any
// token), and the decode work per token is bounded (counted in decoded ids, not timed).
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <random>

#include "../../tests/test_util.h"
#include "io/tokenizer.h"
#include "io/tokenizer_impl.h"

namespace subq {
namespace {

using testing::DataDir;

// Forwards to a tokenizer and counts the ids passed to Decode.
class CountingTokenizer : public Tokenizer {
 public:
  explicit CountingTokenizer(const Tokenizer& t) : t_(t) {}
  std::vector<int> Encode(const std::string& text, bool add_bos) const override { return t_.Encode(text, add_bos); }
  std::string Decode(const std::vector<int>& ids) const override {
    decoded_ids += ids.size();
    return t_.Decode(ids);
  }
  int vocab_size() const override { return t_.vocab_size(); }
  int bos_id() const override { return t_.bos_id(); }
  int eos_id() const override { return t_.eos_id(); }
  std::string name() const override { return t_.name(); }
  mutable size_t decoded_ids = 0;

 private:
  const Tokenizer& t_;
};

const char* const kTokenizers[] = {"stories260K/tok512.bin", "stories260K/tok512.model", "babyllama/tok105.bin",
                                   "babyllama/tok105.model", "stories260K/stories260K.gguf"};

std::unique_ptr<Tokenizer> Load(const std::string& rel) {
  auto r = LoadTokenizer(DataDir() + "/" + rel);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : nullptr;
}

std::string ReadPrefix(const std::string& rel, size_t n) {
  std::ifstream f(DataDir() + "/" + rel, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return s.substr(0, n);
}

// Streams ids[k..] after the prompt ids[0..k) and returns the concatenated pieces.
std::string Stream(const Tokenizer& t, const std::vector<int>& ids, size_t k) {
  DecodeStream ds(t, std::vector<int>(ids.begin(), ids.begin() + k));
  std::string out;
  for (size_t i = k; i < ids.size(); ++i) out += ds.Next(ids[i]);
  return out;
}

// The whole decode without the text a later token could still change (an incomplete UTF-8 tail, trailing
// U+FFFD), which a stream holds back.
std::string WithoutPendingTail(std::string s) {
  for (bool changed = true; changed;) {
    const size_t n = s.size();
    s.resize(s.size() - tok::IncompleteUtf8Tail(s));
    if (s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0) s.resize(s.size() - 3);
    changed = s.size() != n;
  }
  return s;
}

std::vector<std::string> Cases() {
  return {"Once upon a time there was a little girl named Lily.",
          "Ünïcödé 世界 🙂 👍🏽 split across byte tokens, then plain words.",
          "  leading spaces\tand tabs\r\nand CRLF, \xC2\xA0nbsp \xE3\x80\x80 ideographic space",
          "emoji run 🙂🙂🙂🐉🐉 and CJK 漢字仮名交じり文 mixed with words",
          ReadPrefix("text/tinystories-sample.txt", 3000), ReadPrefix("text/mobydick.txt", 2000)};
}

TEST(DecodeStream, EqualsWholeDecodeOnRealTokenizers) {
  for (const char* name : kTokenizers) {
    auto t = Load(name);
    ASSERT_TRUE(t);
    for (const std::string& text : Cases()) {
      const std::vector<int> ids = t->Encode(text, true);
      const std::string whole = t->Decode(ids);
      ASSERT_EQ(Stream(*t, ids, 1), whole.substr(t->Decode({ids[0]}).size())) << name << ": " << text.substr(0, 60);
      // Prompts cut at every token of the first 40 (inside multi-byte characters too): what streams after
      // the prompt completes its text to the whole decode.
      for (size_t k = 1; k < std::min<size_t>(ids.size(), 40); ++k) {
        const std::string prompt_text = t->Decode(std::vector<int>(ids.begin(), ids.begin() + k));
        size_t stable = prompt_text.size();
        while (stable > 0 && whole.compare(0, stable, prompt_text, 0, stable) != 0) --stable;
        const std::string got = Stream(*t, ids, k);
        ASSERT_EQ(whole.substr(whole.size() - got.size()), got) << name << " prompt of " << k << " tokens";
        ASSERT_GE(got.size() + stable, whole.size()) << name << " prompt of " << k << " tokens lost text";
      }
    }
  }
}

TEST(DecodeStream, EqualsWholeDecodeOnRandomIds) {
  // Random ids, about half of them byte-fallback pieces: lone continuation bytes, truncated and
  // complete multi-byte sequences, control tokens.
  for (const char* name : kTokenizers) {
    auto t = Load(name);
    ASSERT_TRUE(t);
    std::mt19937 rng(7);
    for (int trial = 0; trial < 30; ++trial) {
      std::vector<int> ids = {t->bos_id()};
      for (int i = 0; i < 200; ++i)
        ids.push_back(rng() % 2 ? static_cast<int>(3 + rng() % 256) : static_cast<int>(rng() % t->vocab_size()));
      ASSERT_EQ(Stream(*t, ids, 1), WithoutPendingTail(t->Decode(ids))) << name << " trial " << trial;
    }
  }
}

TEST(DecodeStream, DecodeWorkIsLinearInLength) {
  auto base = Load("stories260K/tok512.bin");
  ASSERT_TRUE(base);
  CountingTokenizer t(*base);
  std::vector<int> ids = t.Encode(ReadPrefix("text/tinystories-sample.txt", 60000), true);
  const std::string tricky = "世界 🙂";  // byte-fallback pieces pending across tokens
  for (int r = 0; r < 200; ++r)
    for (int id : t.Encode(tricky, false)) ids.push_back(id);
  ASSERT_GT(ids.size(), 15000u);
  const std::string whole = t.Decode(ids);
  t.decoded_ids = 0;
  const std::string got = Stream(t, ids, 1);
  EXPECT_EQ(got, whole);
  // The old stream re-decoded the whole history per token (~n^2/2 = 10^8 ids here).
  EXPECT_LT(t.decoded_ids, 40 * ids.size()) << "decoded " << t.decoded_ids << " ids for " << ids.size() << " tokens";
  // A long prompt is decoded once, not per token.
  t.decoded_ids = 0;
  DecodeStream ds(t, ids);
  for (int i = 0; i < 100; ++i) ds.Next(ids[1 + i]);
  EXPECT_LT(t.decoded_ids, 40 * 100 + ids.size());
}

}  // namespace
}  // namespace subq
