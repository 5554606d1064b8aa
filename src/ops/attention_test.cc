// ops::AttendCausal (decode and prefill, GQA, key tiles, threads) against ops::ref::AttendCausal.
#include <string>
#include <vector>

#include "ops/ops.h"
#include "ops/reference.h"
#include "ops/test_util.h"

namespace subq::ops {
namespace {
using testing::ExpectNear;
using testing::ForEachTarget;
using testing::Random;

// Outputs are convex combinations of values in [-1, 1]: 1e-5 absolute is 1e-5 of their scale.
void CheckAttention(int L, int past, int n_heads, int n_kv, int hd, int threads) {
  const int T = past + L, ldq = n_heads * hd + 3, ldkv = n_kv * hd + 1, ldo = n_heads * hd + 2;
  const auto q = Random(size_t(L) * ldq, L + hd, -2, 2);
  const auto k = Random(size_t(T) * ldkv, T + 1, -2, 2), v = Random(size_t(T) * ldkv, T + 2);
  std::vector<float> got(size_t(L) * ldo, 0.0f), want = got;
  std::vector<float> scratch(threads * AttentionScratchFloats(hd));
  if (threads == 1) {
    AttendCausal(q.data(), ldq, L, n_heads, n_kv, hd, k.data(), v.data(), ldkv, past, got.data(), ldo, scratch.data());
  } else {
    AttendCausal(Threads{threads}, q.data(), ldq, L, n_heads, n_kv, hd, k.data(), v.data(), ldkv, past, got.data(),
                 ldo, scratch.data());
  }
  ref::AttendCausal(q.data(), ldq, L, n_heads, n_kv, hd, k.data(), v.data(), ldkv, past, want.data(), ldo);
  const std::string what = "L=" + std::to_string(L) + " past=" + std::to_string(past) + " heads=" +
                           std::to_string(n_heads) + "/" + std::to_string(n_kv) + " hd=" + std::to_string(hd);
  ExpectNear(got, want, std::vector<float>(got.size(), 1.0f), 1e-5, 0.0, what.c_str());
}

TEST(Attention, DecodeOverKeyTiles) {
  for (int past : {0, 1, 255, 256, 700})
    for (int hd : {20, 64}) {
      CheckAttention(1, past, 12, 4, hd, 1);
      CheckAttention(1, past, 4, 4, hd, 1);
    }
}

TEST(Attention, PrefillBlocksAndGqa) {
  for (int L : {2, 5, 11, 40, 300})
    for (int past : {0, 37}) {
      CheckAttention(L, past, 12, 4, 64, 1);  // 3 heads per KV head: blocks of 10 tokens
      CheckAttention(L, past, 6, 1, 17, 2);   // odd head dim, one KV head
    }
  CheckAttention(3, 5, 40, 1, 8, 2);  // a group larger than the query slots
}

TEST(Attention, EveryTarget) {
  ForEachTarget([&] {
    CheckAttention(1, 300, 12, 4, 64, 1);
    CheckAttention(23, 280, 12, 4, 64, 2);
  });
}

}  // namespace
}  // namespace subq::ops
