// Helpers for the io/ reader tests: a temp folder per test, byte-level file edits, and the HF q/k
// row permutation (rotate-half) that Meta/llama2.c weights go through on conversion.
#pragma once
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "io/checkpoint.h"
#include "../../tests/test_util.h"

namespace subq::testing {

inline std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void WriteBytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline void WriteText(const std::string& path, const std::string& s) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << s;
}

template <typename T>
void Poke(std::vector<uint8_t>* b, size_t offset, T v) {
  ASSERT_LE(offset + sizeof(T), b->size());
  std::memcpy(b->data() + offset, &v, sizeof(T));
}

// Offset of the first occurrence of `s` in `b` (fails the test if absent).
inline size_t FindBytes(const std::vector<uint8_t>& b, const std::string& s) {
  auto it = std::search(b.begin(), b.end(), s.begin(), s.end());
  EXPECT_NE(it, b.end()) << "'" << s << "' not found";
  return static_cast<size_t>(it - b.begin());
}

// The dimensions every copy of stories260K shares (.bin, .gguf, hf/): dim 64, hidden 172, 5 layers,
// 8 heads of 8, 4 kv heads, vocab 512.
inline void ExpectStories260KDims(const ModelConfig& c) {
  EXPECT_EQ(c.family, "llama");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.attn.n_heads, 8);
  EXPECT_EQ(c.attn.n_kv_heads, 4);
  EXPECT_EQ(c.attn.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
}

// A fresh temp folder, removed when the fixture ends.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "subq_io_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(tmp_); }
  std::string Tmp(const std::string& name) const { return tmp_ + "/" + name; }
  std::string tmp_;
};

// Expects `r` to be an error whose message names `file` (by its file name).
template <typename R>
void ExpectErrorNaming(const R& r, const std::string& file, const std::string& also = "") {
  ASSERT_FALSE(r.ok()) << "expected an error reading " << file;
  const std::string msg = r.status().message();
  const std::string base = std::filesystem::path(file).filename().string();
  EXPECT_NE(msg.find(base), std::string::npos) << "message does not name " << base << ": " << msg;
  if (!also.empty()) EXPECT_NE(msg.find(also), std::string::npos) << "message lacks '" << also << "': " << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "message spans lines: " << msg;
}

inline std::vector<float> AsFloats(const TensorInfo* t) {
  std::vector<float> v(t->nbytes / 4);
  std::memcpy(v.data(), t->data, v.size() * 4);
  return v;
}

// Undoes the HF conversion permutation of q/k rows: HF row h*hd + t*hd/2 + i holds Meta row h*hd + 2i + t.
inline std::vector<float> UnpermuteRows(const std::vector<float>& hf, int n_heads, int head_dim, int cols) {
  std::vector<float> meta(hf.size());
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h)
    for (int t = 0; t < 2; ++t)
      for (int i = 0; i < half; ++i)
        std::memcpy(&meta[(size_t(h) * head_dim + 2 * i + t) * cols], &hf[(size_t(h) * head_dim + t * half + i) * cols],
                    cols * sizeof(float));
  return meta;
}

inline std::string Stories(const std::string& rel) { return DataDir() + "/stories260K/" + rel; }

}  // namespace subq::testing
