// Token shards on real data: TinyStories through the stories260K tokenizer into shards (plain text and
// JSONL), read back through the mapped reader exactly as the tokenizer encodes each document, the
// held-out split by documents, and clear errors for truncated, corrupted and mismatched files.
#include "io/token_shards.h"

#include <nlohmann/json.hpp>

#include "io/io_test_util.h"
#include "io/prepare_shards.h"

namespace subq {
namespace {

using testing::ExpectErrorNaming;
using testing::ReadBytes;
using testing::WriteBytes;
using testing::WriteText;

class TokenShardsTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    auto t = LoadTokenizer(testing::DataDir() + "/stories260K/tok512.model");
    ASSERT_TRUE(t.ok()) << t.status().message();
    tok_ = std::move(t.value());
    std::ifstream f(testing::DataDir() + "/text/tinystories-sample.txt");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    size_t start = 0;  // the first 200 stories
    for (int i = 0; i < 200; ++i) {
      const size_t end = text.find("<|endoftext|>", start);
      std::string d = text.substr(start, end - start);
      d = d.substr(d.find_first_not_of(" \n"), d.find_last_not_of(" \n") - d.find_first_not_of(" \n") + 1);
      docs_.push_back(d);
      start = end + 13;
    }
    std::string joined;
    for (const auto& d : docs_) joined += d + "\n<|endoftext|>\n";
    WriteText(Tmp("stories.txt"), joined);
  }
  PrepareOptions Opts(const std::string& out) {
    PrepareOptions o;
    o.inputs = {Tmp("stories.txt")};
    o.out_dir = Tmp(out);
    o.held_out_every = 10;
    o.shard_tokens = 5000;  // several shards
    return o;
  }
  // The framed ids of documents i with (i % every == every - 1) == held.
  std::vector<int> Expected(int every, bool held, bool eos) const {
    std::vector<int> out;
    for (size_t i = 0; i < docs_.size(); ++i) {
      if ((static_cast<int>(i % every) == every - 1) != held) continue;
      auto ids = tok_->Encode(docs_[i], true);
      if (eos) ids.push_back(tok_->eos_id());
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  }
  std::vector<int> ReadAll(const std::string& dir, const std::string& split) {
    auto r = ShardReader::Open(dir, split, true);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok()) return {};
    std::vector<int> ids((*r)->size());
    EXPECT_TRUE((*r)->Read(0, (*r)->size(), ids.data()).ok());
    return ids;
  }
  std::unique_ptr<Tokenizer> tok_;
  std::vector<std::string> docs_;
};

TEST_F(TokenShardsTest, PlainTextRoundTripsWithHeldOutDocuments) {
  auto st = PrepareShards(Opts("shards"), *tok_, nullptr);
  ASSERT_TRUE(st.ok()) << st.status().message();
  EXPECT_EQ(st->docs, 200);
  EXPECT_EQ(st->held_out_docs, 20);
  auto idx = ReadShardIndex(Tmp("shards"));
  ASSERT_TRUE(idx.ok());
  EXPECT_EQ(idx->token_bytes, 2);  // vocab 512 fits uint16
  EXPECT_EQ(idx->vocab_size, 512);
  EXPECT_GT(idx->train.size(), 3u);
  const auto train = ReadAll(Tmp("shards"), "train"), held = ReadAll(Tmp("shards"), "held_out");
  EXPECT_EQ(train, Expected(10, false, false));
  EXPECT_EQ(held, Expected(10, true, false));
  EXPECT_EQ(train[0], tok_->bos_id());
  // A read across a shard boundary equals the same slice of the whole stream.
  auto r = ShardReader::Open(Tmp("shards"), "train", false);
  ASSERT_TRUE(r.ok());
  const int64_t edge = idx->train[0].tokens - 7;
  std::vector<int> part(20);
  ASSERT_TRUE((*r)->Read(edge, 20, part.data()).ok());
  EXPECT_EQ(part, std::vector<int>(train.begin() + edge, train.begin() + edge + 20));
  EXPECT_FALSE((*r)->Read(train.size() - 5, 10, part.data()).ok());
  // held_out.txt holds the held-out documents' text.
  std::ifstream ht(Tmp("shards/held_out.txt"));
  std::stringstream hs;
  hs << ht.rdbuf();
  EXPECT_EQ(hs.str().find(docs_[9]), 0u);
  // A second prepare into the same folder refuses.
  ExpectErrorNaming(PrepareShards(Opts("shards"), *tok_, nullptr), "shards", "already holds");
}

TEST_F(TokenShardsTest, JsonlWithEosAndUint32) {
  std::string jsonl;
  for (const auto& d : docs_) jsonl += nlohmann::json({{"text", d}, {"id", 1}}).dump() + "\n";
  WriteText(Tmp("stories.jsonl"), jsonl);
  PrepareOptions o = Opts("j");
  o.inputs = {Tmp("stories.jsonl")};
  o.add_eos = true;
  o.token_bytes = 4;
  auto st = PrepareShards(o, *tok_, nullptr);
  ASSERT_TRUE(st.ok()) << st.status().message();
  EXPECT_EQ(ReadAll(Tmp("j"), "train"), Expected(10, false, true));
  EXPECT_EQ(ReadAll(Tmp("j"), "held_out"), Expected(10, true, true));

  WriteText(Tmp("bad.jsonl"), "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n");
  o.inputs = {Tmp("bad.jsonl")};
  o.out_dir = Tmp("bad");
  ExpectErrorNaming(PrepareShards(o, *tok_, nullptr), "bad.jsonl", ":2: no string field");
}

TEST_F(TokenShardsTest, TruncatedCorruptAndUnfinishedShardsAreClearErrors) {
  ASSERT_TRUE(PrepareShards(Opts("s"), *tok_, nullptr).ok());
  const std::string shard = Tmp("s/train-00001.tok");
  const auto good = ReadBytes(shard);
  auto cut = good;
  cut.resize(cut.size() - 3);
  WriteBytes(shard, cut);
  ExpectErrorNaming(ShardReader::Open(Tmp("s"), "train", false), shard, "truncated");
  auto flipped = good;
  flipped[100] ^= 0x40;
  WriteBytes(shard, flipped);
  ExpectErrorNaming(ShardReader::Open(Tmp("s"), "train", true), shard, "checksum");
  // Without the checksum pass, an id outside the vocab is still caught when read.
  auto big = good;
  big[40] = 0xff;
  big[41] = 0xff;
  WriteBytes(shard, big);
  auto r = ShardReader::Open(Tmp("s"), "train", false);
  ASSERT_TRUE(r.ok());
  std::vector<int> all((*r)->size());
  Status s = (*r)->Read(0, (*r)->size(), all.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("outside the vocab"), std::string::npos) << s.message();
  WriteBytes(shard, {'n', 'o', 'p', 'e'});
  ExpectErrorNaming(ShardReader::Open(Tmp("s"), "train", false), shard, "bad magic");
  std::filesystem::remove(Tmp("s/index.json"));
  ExpectErrorNaming(ReadShardIndex(Tmp("s")), "index.json", "did not finish");
  WriteText(Tmp("s/index.json"), "{\"format\": \"subq-token-shards\", \"version\": 1}");
  ExpectErrorNaming(ReadShardIndex(Tmp("s")), "index.json", "malformed");
}

}  // namespace
}  // namespace subq
