// The HF tokenizer.json BPE tokenizer: its pipeline pieces (built by tokenizer_hf_json_load.cc from the
// JSON, run by tokenizer_hf_json.cc).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/tokenizer_impl.h"
#include "io/tokenizer_normalize.h"
#include "io/tokenizer_regex.h"

namespace subq::tok {

// GPT-2's bytes_to_unicode: every byte as a printable character, and back.
class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet();
  std::string Encode(std::string_view bytes) const;
  // Appends the bytes of a token made only of alphabet characters; false if it has another character.
  bool Decode(std::string_view token, std::string* out) const;

 private:
  std::string char_of_byte_[256];
  std::unordered_map<uint32_t, uint8_t> byte_of_char_;
};

struct AddedToken {
  int id = -1;
  std::string content;
  std::string match;  // what is looked for: content, or for a `normalized` token the normalized content
  bool single_word = false, lstrip = false, rstrip = false, special = false;
  bool normalized = false;  // matched in the normalized text (after the normalizer) instead of the raw text
};

// GPT-2's pre-tokenization regex, which the ByteLevel pre-tokenizer applies with use_regex.
inline constexpr const char* kGpt2SplitRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct PreTokenizerStep {
  enum Kind { kSplit, kByteLevel, kMetaspace } kind;
  std::shared_ptr<const Regex> regex;               // Split; ByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::kIsolated;  // Split
  bool invert = false;                              // Split
  bool add_prefix_space = false;                    // ByteLevel
  std::string replacement;                          // Metaspace
  enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
  bool split = true;
};

struct DecoderStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  std::shared_ptr<const Regex> regex;  // Replace: matches -> content
  std::string pattern, content;  // Strip: content; Metaspace: pattern = replacement
  int start = 0, stop = 0;       // Strip
  bool prepend_first = true;     // Metaspace: the first token's leading replacement is dropped
};

class HfBpeTokenizer : public Tokenizer {
 public:
  std::vector<int> Encode(const std::string& text, bool add_bos) const override;
  std::string Decode(const std::vector<int>& ids) const override;
  int vocab_size() const override { return static_cast<int>(id_to_token_.size()); }
  int bos_id() const override { return bos_; }
  int eos_id() const override { return eos_; }
  std::string name() const override { return name_; }

 private:
  friend class HfJsonLoader;
  friend class TiktokenLoader;
  struct Segment {
    std::string_view text;
    int added_id;  // >= 0: an added token
    bool at_start;  // the segment begins at offset 0 of the input
  };
  struct Piece {
    std::string text;
    bool at_start;
  };
  struct Merge {
    int rank, new_id;
  };
  static uint64_t PairKey(int a, int b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

  // Splits off the added tokens of one kind (normalized or not) from `text`.
  std::vector<Segment> SplitAddedTokens(std::string_view text, bool at_start, bool normalized) const;
  void EncodeSegment(std::string_view text, bool at_start, std::vector<int>* out) const;
  std::vector<Piece> PreTokenize(std::vector<Piece> pieces) const;
  void EncodeWord(const std::string& word, std::vector<int>* out) const;

  std::string name_;
  std::unordered_map<std::string, int> vocab_;  // model vocabulary
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<std::string> id_to_token_;        // model vocabulary and added tokens
  std::vector<bool> has_token_, special_;
  std::vector<AddedToken> added_;
  // indexes into added_ by the first byte of `match`: [0] raw-text tokens, [1] normalized ones
  std::unordered_map<uint8_t, std::vector<int>> added_by_first_byte_[2];
  std::vector<NormalizerStep> norm_;
  std::vector<PreTokenizerStep> pre_;
  std::vector<DecoderStep> dec_;
  ByteLevelAlphabet bytes_;
  int unk_id_ = -1, bos_ = -1, eos_ = -1;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
};

}  // namespace subq::tok
