// SentencePiece .model files, encoded and decoded by the SentencePiece library itself.
#include <exception>
#include <filesystem>
#include <sentencepiece_processor.h>

#include "io/tokenizer_impl.h"

namespace subq::tok {
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(std::string name, std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
      : name_(std::move(name)), sp_(std::move(sp)) {}

  std::vector<int> Encode(const std::string& text, bool add_bos) const override {
    std::vector<int> ids;
    if (!sp_->Encode(text, &ids).ok()) ids.clear();  // only fails when no model is loaded
    if (add_bos && bos_id() >= 0) ids.insert(ids.begin(), bos_id());
    return ids;
  }

  std::string Decode(const std::vector<int>& ids) const override {
    std::vector<int> valid;  // the library rejects the whole call for one out-of-range id
    valid.reserve(ids.size());
    for (int id : ids)
      if (id >= 0 && id < vocab_size()) valid.push_back(id);
    std::string text;
    if (!sp_->Decode(valid, &text).ok()) text.clear();
    return text;
  }

  int vocab_size() const override { return sp_->GetPieceSize(); }
  int bos_id() const override { return sp_->bos_id(); }
  int eos_id() const override { return sp_->eos_id(); }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace

Result<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  sentencepiece::util::Status st;
  try {  // the library's trie builder throws on some malformed models (e.g. a zero-length piece)
    st = sp->Load(path);
  } catch (const std::exception& e) {
    return Errorf("{}: not a SentencePiece model: {}", path, e.what());
  }
  if (!st.ok()) return Errorf("{}: not a SentencePiece model: {}", path, st.ToString());
  if (sp->GetPieceSize() <= 0) return Errorf("{}: SentencePiece model has no pieces", path);
  const std::string name = "sentencepiece " + std::filesystem::path(path).filename().string();
  return std::unique_ptr<Tokenizer>(new SentencePieceTokenizer(name, std::move(sp)));
}

}  // namespace subq::tok
