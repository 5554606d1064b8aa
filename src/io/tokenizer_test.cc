// Tokenizer tests on the bundled tokenizers and texts: llama2.c tokenizer.bin and the GGUF embedded vocab
// against the SentencePiece library on the .model they came from, decoding, streaming, regex splits
// (expectations from the HF tokenizers library), UTF-8 helpers, and error paths.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sentencepiece_processor.h>

#include "../../tests/test_util.h"
#include "io/tokenizer.h"
#include "io/tokenizer_impl.h"
#include "io/tokenizer_normalize.h"
#include "io/tokenizer_regex.h"

namespace subq {
namespace {

namespace fs = std::filesystem;
using testing::DataDir;

std::unique_ptr<Tokenizer> MustLoad(Result<std::unique_ptr<Tokenizer>> r) {
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : nullptr;
}

// Lines (with their line ends) and 7-line paragraphs of the first 200 lines of every bundled text, plus
// edge cases.
const std::vector<std::string>& Texts() {
  static const std::vector<std::string> texts = [] {
    std::vector<std::string> out = {"", " ", "a", "Once upon a time", "  lead", "trail  ", "a  b   c",
                                    "tab\tand\r\nCRLF\r\n", "héllo wörld — naïve", "世界 🙂 👍🏽", "<s> literal",
                                    "numbers 1234567 3.14", "\xC2\xA0nbsp \xE3\x80\x80 ideographic"};
    std::vector<fs::path> files;
    for (const char* dir : {"text", "text/austen"})
      for (const auto& e : fs::directory_iterator(fs::path(DataDir()) / dir))
        if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::vector<std::string> lines;
      std::string line;
      while (lines.size() < 200 && std::getline(in, line)) lines.push_back(line + "\n");
      for (size_t i = 0; i < lines.size(); i += 7) {
        std::string para;
        for (size_t k = i; k < std::min(lines.size(), i + 7); ++k) para += lines[k];
        out.push_back(para);
      }
      out.insert(out.end(), lines.begin(), lines.end());
    }
    return out;
  }();
  return texts;
}

bool HasExtraSpaces(const std::string& t) {
  return t.find("  ") != std::string::npos || (!t.empty() && (t.front() == ' ' || t.back() == ' '));
}

std::string Collapse(const std::string& t) {
  std::string o;
  for (char c : t)
    if (!(c == ' ' && (o.empty() || o.back() == ' '))) o.push_back(c);
  while (!o.empty() && o.back() == ' ') o.pop_back();
  return o;
}

// The llama2.c encoder equals SentencePiece up to SentencePiece's whitespace normalisation; with the
// normalisation option on it equals it everywhere.
void ExpectMatchesSentencePiece(const std::string& bin, const std::string& model, bool check_decode) {
  auto sp = MustLoad(tok::LoadSentencePieceTokenizer(model));
  auto l2c = MustLoad(tok::LoadLlama2cTokenizer(bin));
  auto l2c_norm = MustLoad(tok::LoadLlama2cTokenizer(bin, -1, {.remove_extra_whitespaces = true}));
  ASSERT_TRUE(sp && l2c && l2c_norm);
  ASSERT_EQ(l2c->vocab_size(), sp->vocab_size());
  ASSERT_GT(Texts().size(), 1500u);
  int compared_plain = 0;
  for (const std::string& t : Texts()) {
    const std::vector<int> ref = sp->Encode(t, false);
    ASSERT_EQ(l2c_norm->Encode(t, false), ref) << bin << " (normalising) on: " << t;
    if (!HasExtraSpaces(t)) {
      ASSERT_EQ(l2c->Encode(t, false), ref) << bin << " on: " << t;
      ++compared_plain;
    } else {
      ASSERT_EQ(l2c->Encode(Collapse(t), false), ref) << bin << " on collapsed: " << t;
    }
    ASSERT_EQ(l2c->Encode(t, true).front(), 1);
    if (check_decode) ASSERT_EQ(l2c->Decode(ref), sp->Decode(ref)) << bin << " decoding: " << t;
  }
  EXPECT_GT(compared_plain, 1000);
}

TEST(Tokenizer, Llama2cTok512MatchesSentencePiece) {
  const std::string d = DataDir() + "/stories260K/";
  ExpectMatchesSentencePiece(d + "tok512.bin", d + "tok512.model", /*check_decode=*/true);
}

TEST(Tokenizer, Llama2cTok105MatchesSentencePiece) {
  // tok105 has no byte tokens: unknown characters become <unk>, whose decoding differs (" ⁇ " vs the
  // model's unk_surface), so only encoding is compared.
  const std::string d = DataDir() + "/babyllama/";
  ExpectMatchesSentencePiece(d + "tok105.bin", d + "tok105.model", /*check_decode=*/false);
}

TEST(Tokenizer, KnownIdsOnceUponATime) {
  const std::string d = DataDir() + "/stories260K/";
  const std::vector<int> want = {1, 403, 407, 261, 378};  // from the Python sentencepiece library
  for (const std::string p : {d + "tok512.bin", d + "tok512.model", d + "stories260K.gguf", d + "hf"}) {
    auto t = MustLoad(LoadTokenizer(p));
    ASSERT_TRUE(t) << p;
    EXPECT_EQ(t->Encode("Once upon a time", true), want) << p;
    EXPECT_EQ(t->Decode(want), "Once upon a time") << p;
    EXPECT_EQ(t->bos_id(), 1);
    EXPECT_EQ(t->eos_id(), 2);
    EXPECT_EQ(t->vocab_size(), 512);
  }
  auto t = MustLoad(LoadTokenizer(DataDir() + "/babyllama/tok105.bin"));
  EXPECT_EQ(t->Encode("Once upon a time", false),
            (std::vector<int>{3, 34, 9, 22, 4, 3, 18, 20, 7, 9, 3, 5, 3, 6, 10, 16, 4}));
}

// An EmbeddedVocab built by hand from the SentencePiece model (U+2581 pieces, token types), and the
// one the GGUF reader produces, encode like tok512.bin.
TEST(Tokenizer, EmbeddedVocabMatchesLlama2c) {
  const std::string d = DataDir() + "/stories260K/";
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(d + "tok512.model").ok());
  EmbeddedVocab v;
  v.model = "llama";
  for (int i = 0; i < sp.GetPieceSize(); ++i) {
    v.tokens.push_back(sp.IdToPiece(i));
    v.scores.push_back(sp.GetScore(i));
    v.token_types.push_back(sp.IsUnknown(i) ? 2 : sp.IsControl(i) ? 3 : sp.IsByte(i) ? 6 : 1);
  }
  v.bos_id = 1, v.eos_id = 2, v.unk_id = 0;
  auto hand = MustLoad(tok::MakeEmbeddedVocabTokenizer(v, "hand-built"));
  auto bin = MustLoad(tok::LoadLlama2cTokenizer(d + "tok512.bin"));
  auto gguf = MustLoad(LoadTokenizer(d + "stories260K.gguf"));
  ASSERT_TRUE(hand && bin && gguf);
  for (const std::string& t : Texts()) {
    const std::vector<int> ids = bin->Encode(t, true);
    ASSERT_EQ(hand->Encode(t, true), ids) << t;
    ASSERT_EQ(gguf->Encode(t, true), ids) << t;
    ASSERT_EQ(gguf->Decode(ids), bin->Decode(ids)) << t;
  }
}

TEST(Tokenizer, DecodeStreamHoldsBackPartialCharacters) {
  auto t = MustLoad(LoadTokenizer(DataDir() + "/stories260K/tok512.bin"));
  const std::string text = "Ünïcödé 世界 🙂 byte tokens";
  const std::vector<int> ids = t->Encode(text, true);
  DecodeStream ds(*t, {ids[0]});
  std::string got;
  for (size_t i = 1; i < ids.size(); ++i) {
    const std::string piece = ds.Next(ids[i]);
    EXPECT_TRUE(tok::IsValidUtf8(piece)) << i;
    got += piece;
  }
  EXPECT_EQ(got, text);
  // The prompt's text is not repeated.
  DecodeStream ds2(*t, t->Encode("Once upon", true));
  EXPECT_EQ(ds2.Next(t->Encode("a", false)[0]), " a");
}

// Expectations from tokenizers.pre_tokenizers.Split(Regex(...), behavior).pre_tokenize_str.
TEST(Tokenizer, RegexSplitsMatchTokenizersLibrary) {
  const std::string gpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  using V = std::vector<std::string>;
  auto split = [](const std::string& s, const std::string& pattern, tok::SplitBehavior b = tok::SplitBehavior::kIsolated,
                  bool invert = false) {
    auto re = tok::Regex::Compile(pattern);
    EXPECT_TRUE(re.ok()) << re.status().message();
    V out;
    for (auto v : tok::SplitByRegex(s, **re, b, invert)) out.emplace_back(v);
    return out;
  };
  EXPECT_EQ(split("Hello world's  end\n\n  x", gpt2), (V{"Hello", " world", "'s", " ", " end", "\n\n ", " x"}));
  EXPECT_EQ(split("I'M 12345 ok?!\r\n  \tdone  ", gpt2),
            (V{"I", "'", "M", " 12345", " ok", "?!", "\r\n  ", "\t", "done", "  "}));
  EXPECT_EQ(split("été 世界 3.14 ٣٤", gpt2), (V{"été", " 世界", " 3", ".", "14", " ٣٤"}));
  EXPECT_EQ(split("Hello world's  end\n\n  x", llama3), (V{"Hello", " world", "'s", " ", " end", "\n\n", " ", " x"}));
  EXPECT_EQ(split("I'M 12345 ok?!\r\n  \tdone  ", llama3),
            (V{"I", "'M", " ", "123", "45", " ok", "?!\r\n", "  ", "\tdone", "  "}));
  EXPECT_EQ(split("été 世界 3.14 ٣٤", llama3), (V{"été", " 世界", " ", "3", ".", "14", " ", "٣٤"}));
  using B = tok::SplitBehavior;
  EXPECT_EQ(split("a-b--c", "-", B::kRemoved), (V{"a", "b", "c"}));
  EXPECT_EQ(split("a-b--c", "-", B::kMergedWithPrevious), (V{"a-", "b-", "-", "c"}));
  EXPECT_EQ(split("a-b--c", "-", B::kMergedWithNext), (V{"a", "-b", "-", "-c"}));
  EXPECT_EQ(split("a-b--c", "-", B::kContiguous), (V{"a", "-", "b", "--", "c"}));
  EXPECT_EQ(split("a-b--c", "-", B::kRemoved, /*invert=*/true), (V{"-", "-", "-"}));
  EXPECT_FALSE(tok::Regex::Compile("(unclosed").ok());
  EXPECT_EQ(tok::RegexEscape("a.b*c"), "a\\.b\\*c");
}

// Expectations from tokenizers.normalizers.*.normalize_str on the same text.
TEST(Tokenizer, NormalizersMatchTokenizersLibrary) {
  using N = tok::NormalizerStep;
  const std::string s = "e\u0301 \u00C5 \uFB01 \u2460 \u0130 \u03A3\u0391\u03A3  \t x ";
  auto run = [&](N step) { return tok::Normalize(s, {step}); };
  EXPECT_EQ(run({N::kNfc}), "\u00E9 \u00C5 \uFB01 \u2460 \u0130 \u03A3\u0391\u03A3  \t x ");
  EXPECT_EQ(run({N::kNfd}), "e\u0301 A\u030A \uFB01 \u2460 I\u0307 \u03A3\u0391\u03A3  \t x ");
  EXPECT_EQ(run({N::kNfkc}), "\u00E9 \u00C5 fi 1 \u0130 \u03A3\u0391\u03A3  \t x ");
  EXPECT_EQ(run({N::kLowercase}), "e\u0301 \u00E5 \uFB01 \u2460 i\u0307 \u03C3\u03B1\u03C3  \t x ");
  N strip{N::kStrip};
  strip.left = strip.right = true;
  EXPECT_EQ(run(strip), "e\u0301 \u00C5 \uFB01 \u2460 \u0130 \u03A3\u0391\u03A3  \t x");
  N replace{N::kReplace, "_", tok::Regex::Compile("\\s+").value()};
  EXPECT_EQ(run(replace), "e\u0301_\u00C5_\uFB01_\u2460_\u0130_\u03A3\u0391\u03A3_x_");
  EXPECT_EQ(tok::Normalize("", {{N::kPrepend, "\u2581"}}), "");
  EXPECT_EQ(tok::Normalize("a", {{N::kPrepend, "\u2581"}}), "\u2581a");
}

TEST(Tokenizer, Utf8Helpers) {
  EXPECT_EQ(tok::IncompleteUtf8Tail("ab\xE4\xB8"), 2u);
  EXPECT_EQ(tok::IncompleteUtf8Tail("ab\xE4\xB8\x96"), 0u);
  EXPECT_EQ(tok::IncompleteUtf8Tail("\xF0\x9F\x99"), 3u);
  EXPECT_EQ(tok::IncompleteUtf8Tail("a\x80"), 0u);  // stray continuation byte: invalid, not incomplete
  EXPECT_EQ(tok::Utf8Lossy("a\xE0\x80z"), "a\xEF\xBF\xBD\xEF\xBF\xBDz");  // as Rust from_utf8_lossy
  EXPECT_EQ(tok::Utf8Lossy("a\xF0\x9F\x99z"), "a\xEF\xBF\xBDz");
  EXPECT_TRUE(tok::IsWhitespace(0x3000) && tok::IsWhitespace(0x85) && !tok::IsWhitespace(0x200B) &&
              !tok::IsWhitespace(0x1C));
  EXPECT_TRUE(tok::IsWordChar('_') && tok::IsWordChar(0x4E16) && tok::IsWordChar(0x0301) && !tok::IsWordChar('-'));
}

TEST(Tokenizer, ErrorsNameTheFile) {
  const std::string d = DataDir() + "/stories260K/";
  auto wrong = tok::LoadLlama2cTokenizer(d + "tok512.bin", 500);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("tok512.bin"), std::string::npos);
  auto bin = MustLoad(tok::LoadLlama2cTokenizer(d + "tok512.bin", 512));
  EXPECT_TRUE(CheckVocabMatches(*bin, 512, "tok512.bin").ok());
  const Status mismatch = CheckVocabMatches(*bin, 32000, d + "tok512.bin");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.message().find("32000"), std::string::npos);
  EXPECT_TRUE(CheckVocabMatches(*bin, 520, "tok512.bin", /*allow_padding=*/true).ok());

  // llama2.c checkpoints: the tokenizer beside the model, or an error listing what was looked for.
  Checkpoint ck;
  ck.format = "llama2c";
  ck.config.vocab_size = 512;
  ck.path = d + "stories260K.bin";
  auto found = TokenizerForCheckpoint(ck);
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ((*found)->vocab_size(), 512);
  ck.path = DataDir() + "/llama2xs/model.bin";
  auto missing = TokenizerForCheckpoint(ck);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("tok512.bin"), std::string::npos) << missing.status().message();
  EXPECT_NE(missing.status().message().find("tokenizer.bin"), std::string::npos);
  EXPECT_FALSE(LoadTokenizer(d + "no_such_tokenizer.model").ok());
  EXPECT_FALSE(LoadTokenizer(d + "stories260K.bin").ok());  // a model, not a tokenizer: sizes do not add up
}

}  // namespace
}  // namespace subq
