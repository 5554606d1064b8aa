#include "io/prepare_shards.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace subq {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

bool IsJsonl(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  return ext == ".jsonl" || ext == ".ndjson";
}

std::string Trim(const std::string& d) {
  const size_t s = d.find_first_not_of(" \t\r\n"), e = d.find_last_not_of(" \t\r\n");
  return s == std::string::npos ? std::string() : d.substr(s, e - s + 1);
}

// Calls on_doc(text) for each non-empty document of a file; on_bytes(n) as bytes are consumed.
Status ForEachDocument(const std::string& path, const PrepareOptions& o,
                       const std::function<Status(const std::string&)>& on_doc,
                       const std::function<void(int64_t)>& on_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Errorf("{}: cannot open input file", path);
  if (IsJsonl(path)) {
    int64_t line_no = 0;
    for (std::string line; std::getline(f, line);) {
      ++line_no;
      on_bytes(static_cast<int64_t>(line.size()) + 1);
      if (Trim(line).empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return Errorf("{}:{}: not valid JSON", path, line_no);
      if (!j.is_object() || !j.contains(o.text_key) || !j[o.text_key].is_string())
        return Errorf("{}:{}: no string field \"{}\"", path, line_no, o.text_key);
      const std::string d = Trim(j[o.text_key].get<std::string>());
      if (!d.empty()) SUBQ_RETURN_IF_ERROR(on_doc(d));
    }
    return Status::Ok();
  }
  // Plain text, streamed in blocks; documents end at the separator.
  std::string buf;
  std::vector<char> block(size_t{1} << 22);
  const std::string& sep = o.separator;
  while (f) {
    f.read(block.data(), static_cast<std::streamsize>(block.size()));
    const std::streamsize got = f.gcount();
    if (got <= 0) break;
    buf.append(block.data(), static_cast<size_t>(got));
    if (sep.empty()) continue;
    size_t start = 0;
    for (size_t end; (end = buf.find(sep, start)) != std::string::npos; start = end + sep.size()) {
      const std::string d = Trim(buf.substr(start, end - start));
      on_bytes(static_cast<int64_t>(end + sep.size() - start));  // progress counts consumed bytes
      if (!d.empty()) SUBQ_RETURN_IF_ERROR(on_doc(d));
    }
    buf.erase(0, start);
  }
  if (f.bad()) return Errorf("{}: read error", path);
  on_bytes(static_cast<int64_t>(buf.size()));
  const std::string d = Trim(buf);
  if (!d.empty()) SUBQ_RETURN_IF_ERROR(on_doc(d));
  return Status::Ok();
}

}  // namespace

Result<PrepareStats> PrepareShards(const PrepareOptions& o, const Tokenizer& tok,
                                   const std::function<void(const PrepareStats&, bool)>& progress) {
  if (o.inputs.empty()) return Errorf("no input files (--in)");
  if (o.out_dir.empty()) return Errorf("no output folder (--out)");
  if (o.held_out_every < 0) return Errorf("--held-out-every must be >= 0");
  if (o.shard_tokens < 1) return Errorf("--shard-tokens must be >= 1");
  PrepareStats st;
  for (const auto& p : o.inputs) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return Errorf("{}: input file does not exist", p);
    st.bytes_total += static_cast<int64_t>(fs::file_size(p, ec));
  }
  int token_bytes = o.token_bytes;
  if (token_bytes == 0) token_bytes = tok.vocab_size() <= 65536 ? 2 : 4;
  if (token_bytes != 2 && token_bytes != 4) return Errorf("--token-bytes must be 2 or 4");
  if (token_bytes == 2 && tok.vocab_size() > 65536)
    return Errorf("tokenizer {} has {} tokens: uint16 shards hold at most 65536", tok.name(), tok.vocab_size());
  if (o.add_bos && tok.bos_id() < 0) return Errorf("tokenizer {} has no BOS token (use --no-bos)", tok.name());
  if (o.add_eos && tok.eos_id() < 0) return Errorf("tokenizer {} has no EOS token", tok.name());
  std::error_code ec;
  if (IsShardFolder(o.out_dir)) return Errorf("{} already holds prepared shards (index.json): use another --out", o.out_dir);
  fs::create_directories(o.out_dir, ec);
  if (ec) return Errorf("cannot create --out folder '{}': {}", o.out_dir, ec.message());
  const fs::path held_txt_path = fs::path(o.out_dir) / "held_out.txt";
  std::ofstream held_txt(held_txt_path.string() + ".tmp", std::ios::trunc);
  if (!held_txt) return Errorf("{}: cannot create", held_txt_path.string());

  ShardWriter train(o.out_dir, "train", token_bytes, o.shard_tokens);
  ShardWriter held(o.out_dir, "held_out", token_bytes, o.shard_tokens);
  const auto t0 = Clock::now();
  auto last = t0;
  int64_t doc_index = 0;
  auto tick = [&](bool done) {
    st.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (progress) progress(st, done);
  };
  auto on_doc = [&](const std::string& text) -> Status {
    std::vector<int> ids = tok.Encode(text, o.add_bos);
    if (o.add_eos) ids.push_back(tok.eos_id());
    for (int id : ids)
      if (id < 0 || id >= tok.vocab_size()) return Errorf("tokenizer produced id {} outside its vocab", id);
    const bool is_held = o.held_out_every > 0 && doc_index % o.held_out_every == o.held_out_every - 1;
    ++doc_index;
    ++st.docs;
    if (is_held) {
      ++st.held_out_docs;
      st.held_out_tokens += static_cast<int64_t>(ids.size());
      held_txt << text << "\n" << (o.separator.empty() ? "<|endoftext|>" : o.separator) << "\n";
      SUBQ_RETURN_IF_ERROR(held.Add(ids));
    } else {
      st.tokens += static_cast<int64_t>(ids.size());
      SUBQ_RETURN_IF_ERROR(train.Add(ids));
    }
    if (Clock::now() - last > std::chrono::seconds(1)) {
      last = Clock::now();
      tick(false);
    }
    return Status::Ok();
  };
  for (const auto& p : o.inputs)
    SUBQ_RETURN_IF_ERROR(ForEachDocument(p, o, on_doc, [&](int64_t n) { st.bytes_read += n; }));
  if (st.tokens == 0) return Errorf("the inputs hold no training documents");
  if (o.held_out_every > 0 && st.held_out_docs == 0)
    return Errorf("{} documents are too few for a held-out split of 1 in {} (lower --held-out-every)", st.docs,
                  o.held_out_every);

  ShardIndex idx;
  idx.token_bytes = token_bytes;
  idx.tokenizer = tok.name();
  idx.vocab_size = tok.vocab_size();
  idx.bos_id = tok.bos_id();
  idx.eos_id = tok.eos_id();
  idx.add_bos = o.add_bos;
  idx.add_eos = o.add_eos;
  SUBQ_ASSIGN_OR_RETURN(idx.train, train.Finish());
  SUBQ_ASSIGN_OR_RETURN(idx.held_out, held.Finish());
  held_txt.close();
  if (!held_txt) return Errorf("{}: write failed", held_txt_path.string());
  fs::rename(held_txt_path.string() + ".tmp", held_txt_path, ec);
  if (ec) return Errorf("{}: cannot rename into place: {}", held_txt_path.string(), ec.message());
  SUBQ_RETURN_IF_ERROR(WriteShardIndex(o.out_dir, idx));
  tick(true);
  return st;
}

}  // namespace subq
