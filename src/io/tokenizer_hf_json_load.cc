// Builds HfBpeTokenizer from a tokenizer.json (nlohmann::json), refusing what it does not implement
// with an error naming the file and the component.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "io/json_read.h"
#include "io/tokenizer_hf_json_impl.h"

namespace subq::tok {

using json = nlohmann::json;

class HfJsonLoader {
 public:
  explicit HfJsonLoader(std::string path) : path_(std::move(path)) {}

  Result<std::unique_ptr<Tokenizer>> Load() {
    SUBQ_ASSIGN_OR_RETURN(const json root, ReadJsonFileWithLimits(path_));
    if (!root.is_object()) return Errorf("{}: not a JSON object (tokenizer.json expected)", path_);
    auto t = std::make_unique<HfBpeTokenizer>();
    t->name_ = "tokenizer.json " + path_;
    try {  // nlohmann reports wrong field types by exception; they become errors here
      if (!root.contains("model") || !root["model"].is_object()) return Errorf("{}: no 'model' object", path_);
      SUBQ_RETURN_IF_ERROR(LoadModel(root["model"], t.get()));
      SUBQ_RETURN_IF_ERROR(LoadAdded(root.value("added_tokens", json::array()), t.get()));
      SUBQ_RETURN_IF_ERROR(LoadNormalizer(root.value("normalizer", json()), t.get()));
      SUBQ_RETURN_IF_ERROR(LoadPreTokenizer(root.value("pre_tokenizer", json()), t.get()));
      SUBQ_RETURN_IF_ERROR(LoadDecoder(root.value("decoder", json()), t.get()));
      IndexAddedTokens(t.get());
      FindSpecialIds(root, t.get());
    } catch (const json::exception& e) {
      return Errorf("{}: malformed tokenizer.json: {}", path_, e.what());
    }
    return std::unique_ptr<Tokenizer>(std::move(t));
  }

 private:
  static constexpr int64_t kMaxTokenId = (1 << 24) - 1;  // far above any real vocabulary; bounds the tables

  static std::string TypeOf(const json& j) { return j.is_object() ? j.value("type", std::string()) : std::string(); }

  Status Unsupported(const char* component, const std::string& type, const char* supported) const {
    return Errorf("{}: {} '{}' is not supported (supported: {})", path_, component, type, supported);
  }

  // {"String": s} (matched literally) or {"Regex": r}, compiled as tokenizers compiles both.
  Result<std::shared_ptr<const Regex>> Pattern(const json& p, const char* component) const {
    std::string pattern;
    if (p.is_object() && p.contains("String") && p["String"].is_string()) pattern = RegexEscape(p["String"].get<std::string>());
    else if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) pattern = p["Regex"].get<std::string>();
    else return Errorf("{}: {} pattern {} is neither {{\"String\": ...}} nor {{\"Regex\": ...}}", path_, component, p.dump());
    auto re = Regex::Compile(pattern);
    if (!re.ok()) return Errorf("{}: {}: {}", path_, component, re.status().message());
    return re;
  }

  void SetToken(HfBpeTokenizer* t, int id, const std::string& s) const {
    if (id >= static_cast<int>(t->id_to_token_.size())) {
      t->id_to_token_.resize(id + 1);
      t->has_token_.resize(id + 1, false);
      t->special_.resize(id + 1, false);
    }
    t->id_to_token_[id] = s;
    t->has_token_[id] = true;
  }

  Status LoadModel(const json& m, HfBpeTokenizer* t) const {
    const std::string type = TypeOf(m);
    if (type != "BPE" && !(type.empty() && m.contains("merges")))
      return Unsupported("model type", type, "BPE");
    if (!m.contains("vocab") || !m["vocab"].is_object()) return Errorf("{}: BPE model has no 'vocab' object", path_);
    for (const auto& [tok, id] : m["vocab"].items()) {
      SUBQ_ASSIGN_OR_RETURN(const int64_t i, JsonIntInRange(id, fmt::format("{}: vocab token '{}' id", path_, tok), 0,
                                                            kMaxTokenId));
      t->vocab_[tok] = static_cast<int>(i);
      SetToken(t, static_cast<int>(i), tok);
    }
    for (const char* opt : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json& v = m.value(opt, json());
      if (!v.is_null() && !v.get<std::string>().empty())
        return Errorf("{}: BPE option {}='{}' is not supported", path_, opt, v.get<std::string>());
    }
    const json& dropout = m.value("dropout", json());
    if (!dropout.is_null() && dropout.get<double>() != 0.0)
      return Errorf("{}: BPE dropout {} is not supported (encoding would be random)", path_, dropout.get<double>());
    t->byte_fallback_ = m.value("byte_fallback", false);
    t->fuse_unk_ = m.value("fuse_unk", false);
    t->ignore_merges_ = m.value("ignore_merges", false);
    const json& unk = m.value("unk_token", json());
    if (!unk.is_null()) {
      auto it = t->vocab_.find(unk.get<std::string>());
      if (it == t->vocab_.end()) return Errorf("{}: unk_token '{}' is not in the vocab", path_, unk.get<std::string>());
      t->unk_id_ = it->second;
    }
    const json& merges = m.value("merges", json::array());
    int rank = 0;
    for (const json& mj : merges) {
      std::string a, b;
      if (mj.is_string()) {  // "a b"
        const std::string s = mj.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          return Errorf("{}: merge {} '{}' is not two tokens separated by one space", path_, rank, s);
        a = s.substr(0, sp), b = s.substr(sp + 1);
      } else if (mj.is_array() && mj.size() == 2) {  // ["a", "b"]
        a = mj[0].get<std::string>(), b = mj[1].get<std::string>();
      } else {
        return Errorf("{}: merge {} is neither \"a b\" nor [a, b]: {}", path_, rank, mj.dump());
      }
      auto ia = t->vocab_.find(a), ib = t->vocab_.find(b), im = t->vocab_.find(a + b);
      if (ia == t->vocab_.end() || ib == t->vocab_.end() || im == t->vocab_.end())
        return Errorf("{}: merge {} ('{}' '{}') uses a token missing from the vocab", path_, rank, a, b);
      t->merges_[HfBpeTokenizer::PairKey(ia->second, ib->second)] = {rank, im->second};  // a later duplicate wins
      ++rank;
    }
    return Status::Ok();
  }

  Status LoadAdded(const json& added, HfBpeTokenizer* t) const {
    if (!added.is_array()) return Errorf("{}: 'added_tokens' is not a list", path_);
    for (const json& a : added) {
      AddedToken at;
      SUBQ_ASSIGN_OR_RETURN(const int64_t id, JsonIntInRange(a.at("id"), fmt::format("{}: added token id", path_), 0,
                                                             kMaxTokenId));
      at.id = static_cast<int>(id);
      at.content = a.at("content").get<std::string>();
      at.single_word = a.value("single_word", false);
      at.lstrip = a.value("lstrip", false);
      at.rstrip = a.value("rstrip", false);
      at.special = a.value("special", false);
      at.normalized = a.value("normalized", !at.special);
      if (at.content.empty()) return Errorf("{}: added token {} has empty content", path_, at.id);
      SetToken(t, at.id, at.content);
      t->special_[at.id] = at.special;
      t->added_.push_back(std::move(at));
    }
    return Status::Ok();
  }

  // After the normalizer is known: a `normalized` added token is looked for in normalized text, as its
  // normalized content (tokenizers' split_normalized_trie), and decodes to that content too.
  static void IndexAddedTokens(HfBpeTokenizer* t) {
    for (size_t k = 0; k < t->added_.size(); ++k) {
      AddedToken& a = t->added_[k];
      a.match = a.normalized ? Normalize(a.content, t->norm_) : a.content;
      if (a.normalized) t->id_to_token_[a.id] = a.match;
      if (!a.match.empty())
        t->added_by_first_byte_[a.normalized ? 1 : 0][static_cast<uint8_t>(a.match[0])].push_back(static_cast<int>(k));
    }
  }

  Status LoadNormalizer(const json& n, HfBpeTokenizer* t) const {
    if (n.is_null()) return Status::Ok();
    const std::string type = TypeOf(n);
    NormalizerStep st{NormalizerStep::kNfc, {}, {}};
    if (type == "Sequence") {
      for (const json& s : n.at("normalizers")) SUBQ_RETURN_IF_ERROR(LoadNormalizer(s, t));
      return Status::Ok();
    } else if (type == "NFC") {
      st.kind = NormalizerStep::kNfc;
    } else if (type == "NFD") {
      st.kind = NormalizerStep::kNfd;
    } else if (type == "NFKC") {
      st.kind = NormalizerStep::kNfkc;
    } else if (type == "NFKD") {
      st.kind = NormalizerStep::kNfkd;
    } else if (type == "Lowercase") {
      st.kind = NormalizerStep::kLowercase;
    } else if (type == "Strip") {
      st.kind = NormalizerStep::kStrip;
      st.left = n.value("strip_left", true);
      st.right = n.value("strip_right", true);
    } else if (type == "Prepend") {
      st.kind = NormalizerStep::kPrepend;
      st.text = n.at("prepend").get<std::string>();
    } else if (type == "Replace") {
      st.kind = NormalizerStep::kReplace;
      SUBQ_ASSIGN_OR_RETURN(st.pattern, Pattern(n.at("pattern"), "normalizer Replace"));
      st.text = n.at("content").get<std::string>();
    } else {
      return Unsupported("normalizer", type, "Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, Replace");
    }
    t->norm_.push_back(std::move(st));
    return Status::Ok();
  }

  Result<SplitBehavior> Behavior(const json& p) const {
    const std::string b = p.value("behavior", std::string("Isolated"));
    if (b == "Removed") return SplitBehavior::kRemoved;
    if (b == "Isolated") return SplitBehavior::kIsolated;
    if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
    if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
    if (b == "Contiguous") return SplitBehavior::kContiguous;
    return Errorf("{}: pre-tokenizer Split behavior '{}' is unknown", path_, b);
  }

  // A pre-tokenizer that is a regex split (Split itself, and Digits / Whitespace / WhitespaceSplit,
  // which tokenizers defines as fixed splits).
  Status AddSplit(HfBpeTokenizer* t, const std::string& regex, SplitBehavior behavior, bool invert) const {
    PreTokenizerStep st;
    st.kind = PreTokenizerStep::kSplit;
    auto re = Regex::Compile(regex);
    if (!re.ok()) return Errorf("{}: pre-tokenizer: {}", path_, re.status().message());
    st.regex = std::move(re).value();
    st.behavior = behavior;
    st.invert = invert;
    t->pre_.push_back(std::move(st));
    return Status::Ok();
  }

  Status LoadPreTokenizer(const json& p, HfBpeTokenizer* t) const {
    if (p.is_null()) return Status::Ok();
    const std::string type = TypeOf(p);
    PreTokenizerStep st;
    if (type == "Sequence") {
      for (const json& s : p.at("pretokenizers")) SUBQ_RETURN_IF_ERROR(LoadPreTokenizer(s, t));
      return Status::Ok();
    } else if (type == "ByteLevel") {
      st.kind = PreTokenizerStep::kByteLevel;
      st.add_prefix_space = p.value("add_prefix_space", true);
      if (p.value("use_regex", true)) st.regex = Regex::Compile(kGpt2SplitRegex).value();
    } else if (type == "Split") {
      st.kind = PreTokenizerStep::kSplit;
      SUBQ_ASSIGN_OR_RETURN(st.regex, Pattern(p.at("pattern"), "pre-tokenizer Split"));
      SUBQ_ASSIGN_OR_RETURN(st.behavior, Behavior(p));
      st.invert = p.value("invert", false);
    } else if (type == "Digits") {
      return AddSplit(t, "\\p{N}", p.value("individual_digits", false) ? SplitBehavior::kIsolated
                                                                      : SplitBehavior::kContiguous, false);
    } else if (type == "WhitespaceSplit") {
      return AddSplit(t, "\\s", SplitBehavior::kRemoved, false);
    } else if (type == "Whitespace") {
      // \w of Rust's regex crate, which this pre-tokenizer uses: Oniguruma's \w plus the join controls
      return AddSplit(t, "[\\w\\x{200C}\\x{200D}]+|[^\\w\\s\\x{200C}\\x{200D}]+", SplitBehavior::kRemoved, true);
    } else if (type == "Metaspace") {
      st.kind = PreTokenizerStep::kMetaspace;
      st.replacement = p.value("replacement", std::string("\xE2\x96\x81"));
      SUBQ_RETURN_IF_ERROR(PrependScheme(p, &st.prepend));
      st.split = p.value("split", true);
    } else {
      return Unsupported("pre-tokenizer", type,
                         "Sequence, ByteLevel, Split (any regex), Metaspace, Digits, Whitespace, WhitespaceSplit");
    }
    t->pre_.push_back(std::move(st));
    return Status::Ok();
  }

  Status PrependScheme(const json& p, PreTokenizerStep::Prepend* out) const {
    if (p.contains("prepend_scheme")) {
      const std::string s = p["prepend_scheme"].get<std::string>();
      if (s == "always") *out = PreTokenizerStep::kAlways;
      else if (s == "first") *out = PreTokenizerStep::kFirst;
      else if (s == "never") *out = PreTokenizerStep::kNever;
      else return Errorf("{}: Metaspace prepend_scheme '{}' is unknown", path_, s);
    } else {  // older files
      *out = p.value("add_prefix_space", true) ? PreTokenizerStep::kAlways : PreTokenizerStep::kNever;
    }
    return Status::Ok();
  }

  Status LoadDecoder(const json& d, HfBpeTokenizer* t) const {
    if (d.is_null()) return Status::Ok();
    const std::string type = TypeOf(d);
    DecoderStep st;
    if (type == "Sequence") {
      for (const json& s : d.at("decoders")) SUBQ_RETURN_IF_ERROR(LoadDecoder(s, t));
      return Status::Ok();
    } else if (type == "ByteLevel") {
      st.kind = DecoderStep::kByteLevel;
    } else if (type == "Replace") {
      st.kind = DecoderStep::kReplace;
      SUBQ_ASSIGN_OR_RETURN(st.regex, Pattern(d.at("pattern"), "decoder Replace"));
      st.content = d.at("content").get<std::string>();
    } else if (type == "ByteFallback") {
      st.kind = DecoderStep::kByteFallback;
    } else if (type == "Fuse") {
      st.kind = DecoderStep::kFuse;
    } else if (type == "Strip") {
      st.kind = DecoderStep::kStrip;
      st.content = d.at("content").get<std::string>();
      st.start = d.value("start", 0);
      st.stop = d.value("stop", 0);
    } else if (type == "Metaspace") {
      st.kind = DecoderStep::kMetaspace;
      st.pattern = d.value("replacement", std::string("\xE2\x96\x81"));
      PreTokenizerStep::Prepend scheme{};
      SUBQ_RETURN_IF_ERROR(PrependScheme(d, &scheme));
      st.prepend_first = scheme != PreTokenizerStep::kNever;
    } else {
      return Unsupported("decoder", type, "Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace");
    }
    t->dec_.push_back(std::move(st));
    return Status::Ok();
  }

  // BOS/EOS: tokenizer_config.json beside the file, else the post-processor template, else common names.
  void FindSpecialIds(const json& root, HfBpeTokenizer* t) const {
    auto id_of = [&](const std::string& s) {
      for (const AddedToken& a : t->added_)
        if (a.content == s) return a.id;
      auto it = t->vocab_.find(s);
      return it == t->vocab_.end() ? -1 : it->second;
    };
    const std::filesystem::path cfg = std::filesystem::path(path_).parent_path() / "tokenizer_config.json";
    std::error_code ec;
    if (std::filesystem::exists(cfg, ec)) {
      const auto parsed = ReadJsonFileWithLimits(cfg.string());
      const json c = parsed.ok() ? parsed.value() : json();
      auto name = [&](const char* key) {
        if (!c.is_object() || !c.contains(key)) return std::string();
        const json& v = c[key];
        if (v.is_string()) return v.get<std::string>();
        if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
        return std::string();
      };
      if (std::string b = name("bos_token"); !b.empty()) t->bos_ = id_of(b);
      if (std::string e = name("eos_token"); !e.empty()) t->eos_ = id_of(e);
    }
    if (t->bos_ < 0) t->bos_ = TemplateBos(root.value("post_processor", json()), id_of);
    for (const char* b : {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<|endoftext|>"})
      if (t->bos_ < 0) t->bos_ = id_of(b);
    for (const char* e : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"})
      if (t->eos_ < 0) t->eos_ = id_of(e);
  }

  template <typename IdOf>
  static int TemplateBos(const json& p, const IdOf& id_of) {
    if (!p.is_object()) return -1;
    if (TypeOf(p) == "Sequence" && p.contains("processors")) {
      for (const json& s : p["processors"])
        if (int b = TemplateBos(s, id_of); b >= 0) return b;
      return -1;
    }
    if (TypeOf(p) != "TemplateProcessing" || !p.contains("single") || !p["single"].is_array() || p["single"].empty())
      return -1;
    const json& first = p["single"][0];
    if (first.is_object() && first.contains("SpecialToken") && first["SpecialToken"].is_object())
      return id_of(first["SpecialToken"].value("id", std::string()));
    return -1;
  }

  std::string path_;
};

Result<std::unique_ptr<Tokenizer>> LoadHfJsonTokenizer(const std::string& path) { return HfJsonLoader(path).Load(); }

}  // namespace subq::tok
