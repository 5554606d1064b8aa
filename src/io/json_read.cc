#include "io/json_read.h"

#include <fstream>
#include <iterator>

namespace subq {
namespace {

using json = nlohmann::json;

// A SAX pass that only tracks nesting and stops at the first level past the limit (nlohmann's SAX
// parser itself is iterative, so this pass cannot overflow).
class DepthCheck : public json::json_sax_t {
 public:
  explicit DepthCheck(int max_depth) : max_depth_(max_depth) {}
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return Enter(); }
  bool key(string_t&) override { return true; }
  bool end_object() override { return Leave(); }
  bool start_array(std::size_t) override { return Enter(); }
  bool end_array() override { return Leave(); }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) override {
    error = fmt::format("malformed JSON at byte {}: {}", pos, e.what());
    return false;
  }
  std::string error;

 private:
  bool Enter() {
    if (++depth_ <= max_depth_) return true;
    error = fmt::format("JSON nests deeper than {} levels", max_depth_);
    return false;
  }
  bool Leave() {
    --depth_;
    return true;
  }
  int max_depth_, depth_ = 0;
};

}  // namespace

Result<json> ParseJsonWithLimits(std::string_view text, const std::string& origin, int max_depth) {
  DepthCheck check(max_depth);
  if (!json::sax_parse(text.begin(), text.end(), &check) || !check.error.empty())
    return Errorf("{}: {}", origin, check.error.empty() ? "malformed JSON" : check.error);
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Errorf("{}: malformed JSON", origin);
  return j;
}

Result<json> ReadJsonFileWithLimits(const std::string& path, int max_depth) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Errorf("{}: cannot open", path);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) return Errorf("{}: read error", path);
  return ParseJsonWithLimits(text, path, max_depth);
}

Result<int64_t> JsonIntInRange(const json& v, const std::string& what, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi) || static_cast<int64_t>(u) < lo)
      return Errorf("{} {} is outside {}..{}", what, u, lo, hi);
    return static_cast<int64_t>(u);
  }
  if (!v.is_number_integer()) return Errorf("{} is {}, not an integer", what, v.dump());
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) return Errorf("{} {} is outside {}..{}", what, x, lo, hi);
  return x;
}

}  // namespace subq
