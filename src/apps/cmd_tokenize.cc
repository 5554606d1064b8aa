// subq tokenize: encodes text (or decodes ids) with any supported tokenizer, so tests can compare with
// the Python libraries.
//   --text T | --file F      print the ids as a JSON list
//   --batch F                F is a JSON list of strings; print a JSON list of id lists
//   --decode-ids 1,2,3       print the decoded text (no newline added); --stream decodes id by id
//   --decode-batch F         F is a JSON list of id lists; print a JSON list of strings
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/common.h"
#include "io/json_read.h"
#include "io/tokenizer.h"

namespace subq {
namespace {

struct TokenizeOptions {
  std::string tokenizer, text, file, batch, decode_ids, decode_batch;
  bool bos = false, stream = false;
};

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Errorf("{}: cannot open", path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

Result<nlohmann::json> ReadJsonList(const std::string& path) {
  SUBQ_ASSIGN_OR_RETURN(nlohmann::json j, ReadJsonFileWithLimits(path));
  if (!j.is_array()) return Errorf("{}: expected a JSON list", path);
  return j;
}

// Ids the tokenizer cannot decode are errors, not silently dropped.
Status CheckIdsInVocab(const std::vector<int>& ids, const Tokenizer& t) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= t.vocab_size())
      return Errorf("token id {} (position {}) is outside the vocabulary of {} ({})", ids[i], i, t.vocab_size(),
                    t.name());
  return Status::Ok();
}

std::string Dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void WriteOut(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

int RunTokenize(const TokenizeOptions& o) {
  auto tok = LoadTokenizer(o.tokenizer);
  if (!tok.ok()) return ReportError(tok.status());
  const Tokenizer& t = **tok;
  if (!o.decode_ids.empty()) {
    auto ids = ParseIds(o.decode_ids);
    if (!ids.ok()) return ReportError(ids.status());
    if (Status st = CheckIdsInVocab(*ids, t); !st.ok()) return ReportError(st);
    if (!o.stream) {
      WriteOut(t.Decode(*ids));
    } else {
      DecodeStream ds(t, {});
      for (int id : *ids) WriteOut(ds.Next(id));
    }
    return 0;
  }
  if (!o.decode_batch.empty()) {
    auto j = ReadJsonList(o.decode_batch);
    if (!j.ok()) return ReportError(j.status());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& row : *j) {
      if (!row.is_array()) return ReportError(Errorf("{}: every entry must be a list of ids", o.decode_batch));
      std::vector<int> ids;
      for (const auto& v : row) {
        auto id = JsonIntInRange(v, fmt::format("{}: token id", o.decode_batch), 0, t.vocab_size() - 1);
        if (!id.ok()) return ReportError(id.status());
        ids.push_back(static_cast<int>(*id));
      }
      out.push_back(t.Decode(ids));
    }
    WriteOut(Dump(out) + "\n");
    return 0;
  }
  if (!o.batch.empty()) {
    auto j = ReadJsonList(o.batch);
    if (!j.ok()) return ReportError(j.status());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : *j) {
      if (!s.is_string()) return ReportError(Errorf("{}: every entry must be a string", o.batch));
      out.push_back(t.Encode(s.get<std::string>(), o.bos));
    }
    WriteOut(Dump(out) + "\n");
    return 0;
  }
  std::string text = o.text;
  if (!o.file.empty()) {
    auto r = ReadWholeFile(o.file);
    if (!r.ok()) return ReportError(r.status());
    text = std::move(*r);
  }
  WriteOut(Dump(t.Encode(text, o.bos)) + "\n");
  return 0;
}

}  // namespace

void AddTokenizeCommand(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* c = app.add_subcommand("tokenize", "Encode text to token ids (JSON) or decode ids to text");
  c->add_option("--tokenizer", o->tokenizer, "tokenizer: .bin (llama2.c), .model, tokenizer.json, .gguf or a folder")
      ->required();
  auto* text = c->add_option("--text", o->text, "text to encode");
  auto* file = c->add_option("--file", o->file, "file whose whole content is encoded");
  auto* batch = c->add_option("--batch", o->batch, "JSON list of strings to encode (prints a list of id lists)");
  auto* dec = c->add_option("--decode-ids", o->decode_ids, "comma-separated ids to decode");
  auto* decb = c->add_option("--decode-batch", o->decode_batch, "JSON list of id lists to decode");
  c->add_flag("--bos", o->bos, "prepend the BOS token");
  c->add_flag("--stream", o->stream, "with --decode-ids: decode id by id through DecodeStream");
  CLI::Option* modes[] = {text, file, batch, dec, decb};
  for (CLI::Option* a : modes)
    for (CLI::Option* b : modes)
      if (a != b) a->excludes(b);
  c->callback([o, modes] {
    bool any = false;
    for (CLI::Option* m : modes) any = any || m->count() > 0;
    if (!any) {
      ExitCode() = ReportError(Errorf("tokenize: pass one of --text, --file, --batch, --decode-ids, --decode-batch"));
      return;
    }
    ExitCode() = RunTokenize(*o);
  });
}

}  // namespace subq
