#include "eval/text_data.h"

#include <fstream>
#include <sstream>

namespace subq {

Status CheckUtf8Text(std::string_view text, const std::string& path) {
  const size_t bad = FirstNonTextByte(text);
  if (bad == std::string_view::npos) return Status::Ok();
  return Errorf("{}: not UTF-8 text: byte 0x{:02X} at offset {} ({})", path, static_cast<uint8_t>(text[bad]), bad,
                text[bad] == '\0' ? "a NUL byte: binary data?" : "invalid UTF-8");
}

Result<std::vector<std::string>> ReadDocuments(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Errorf("{}: cannot open text file", path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  SUBQ_RETURN_IF_ERROR(CheckUtf8Text(text, path));
  const std::string sep = "<|endoftext|>";
  std::vector<std::string> docs;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string::npos) end = text.size();
    std::string d = text.substr(start, end - start);
    const size_t a = d.find_first_not_of(" \t\r\n"), b = d.find_last_not_of(" \t\r\n");
    if (a != std::string::npos) docs.push_back(d.substr(a, b - a + 1));
    start = end + sep.size();
  }
  if (docs.empty()) return Errorf("{}: text file is empty", path);
  return docs;
}

Result<std::vector<int>> TokenizeTextFile(const std::string& path, const Tokenizer& tok) {
  SUBQ_ASSIGN_OR_RETURN(std::vector<std::string> docs, ReadDocuments(path));
  std::vector<int> ids;
  for (const auto& d : docs) {
    std::vector<int> e = tok.Encode(d, true);
    ids.insert(ids.end(), e.begin(), e.end());
  }
  if (ids.size() < 2) return Errorf("{}: text encodes to fewer than 2 tokens", path);
  return ids;
}

}  // namespace subq
