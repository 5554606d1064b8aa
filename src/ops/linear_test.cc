// ops::Linear (every WeightType, decode and prefill regimes) and ops::Gemm against ops::ref.
#include <cmath>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "ops/reference.h"
#include "ops/test_util.h"

namespace subq::ops {
namespace {
using testing::ExpectNear;
using testing::ForEachTarget;
using testing::MakeWeight;
using testing::Random;

// Tolerance: f32 sums in another order, 1e-5 of sum_k |x_k w_k| (the error of a K-term f32 sum is
// well below K * 2^-24 of it for the K here).
constexpr double kRel = 1e-5;

std::vector<float> AbsProducts(const std::vector<float>& x, int M, const Weight& w, const std::vector<float>& y0,
                               bool acc) {
  std::vector<float> ax(x.size());
  for (size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
  std::vector<float> row(w.cols), out(static_cast<size_t>(M) * w.rows);
  const int K = static_cast<int>(w.cols), N = static_cast<int>(w.rows);
  for (int n = 0; n < N; ++n) {
    w.DequantizeRow(n, row.data());
    for (int m = 0; m < M; ++m) {
      double s = acc ? std::fabs(y0[m * N + n]) : 0.0;
      for (int k = 0; k < K; ++k) s += ax[m * K + k] * std::fabs(row[k]);
      out[m * N + n] = static_cast<float>(s);
    }
  }
  return out;
}

void CheckLinear(WeightType t, int M, int N, int K, int threads, bool acc) {
  const auto ow = MakeWeight(t, N, K, 1000 + M * 7 + N * 3 + K);
  const std::vector<float> x = Random(static_cast<size_t>(M) * K, 17 + M);
  const std::vector<float> y0 = Random(static_cast<size_t>(M) * N, 23 + N);
  std::vector<float> got = y0, want = y0;
  Linear(Threads{threads}, x.data(), M, ow.w, got.data(), acc);
  ref::Linear(x.data(), M, ow.w, want.data(), acc);
  const std::string what = std::string(WeightTypeName(t)) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                           " K=" + std::to_string(K) + " th=" + std::to_string(threads) + (acc ? " acc" : "");
  ExpectNear(got, want, AbsProducts(x, M, ow.w, y0, acc), kRel, 1e-7, what.c_str());
}

TEST(Linear, AllTypesDecodeAndBatchedShapes) {
  for (WeightType t : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8, WeightType::kQ4}) {
    const bool quant = t == WeightType::kQ8 || t == WeightType::kQ4;
    for (int K : quant ? std::vector<int>{32, 96, 288} : std::vector<int>{1, 17, 64, 100, 288})
      for (int M : {1, 2, 3, 4, 5, 7, 8, 13, 32, 47})
        for (int N : {1, 3, 4, 9, 37}) CheckLinear(t, M, N, K, N == 37 ? 2 : 1, (M + N) % 2 == 1);
  }
}

TEST(Linear, DecodeEveryTarget) {
  ForEachTarget([&] {
    for (WeightType t : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8, WeightType::kQ4})
      for (int M : {1, 3, 6})
        for (int N : {5, 8}) CheckLinear(t, M, N, t == WeightType::kQ8 || t == WeightType::kQ4 ? 96 : 37, 2, M == 3);
  });
}

TEST(Linear, AllTypesPrefillShapes) {
  for (WeightType t : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8, WeightType::kQ4}) {
    const bool quant = t == WeightType::kQ8 || t == WeightType::kQ4;
    for (int K : quant ? std::vector<int>{64, 544} : std::vector<int>{33, 300, 544})
      for (int M : {48, 61})
        for (int N : {5, 100}) CheckLinear(t, M, N, K, 2, N == 100);
  }
}

TEST(Linear, PrefillEveryTargetAndColumnBlocks) {
  ForEachTarget([&] { CheckLinear(WeightType::kQ4, 50, 70, 288, 2, false); });
  CheckLinear(WeightType::kF32, 130, 1100, 300, 2, true);  // more columns than one B block (kNC)
  CheckLinear(WeightType::kQ8, 64, 1100, 544, 2, false);   // and more than one K slice (kKC)
}

TEST(Linear, SingleThreadMatchesReference) {
  CheckLinear(WeightType::kF32, 1, 77, 130, 1, false);
  CheckLinear(WeightType::kQ4, 9, 77, 128, 1, true);
  CheckLinear(WeightType::kBF16, 70, 77, 130, 1, false);
}

void CheckGemm(bool ta, bool tb, int M, int N, int K, float alpha, float beta, int threads) {
  const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
  const std::vector<float> A = Random(static_cast<size_t>(ta ? K : M) * lda, 5 + M);
  const std::vector<float> B = Random(static_cast<size_t>(tb ? N : K) * ldb, 7 + N);
  std::vector<float> got = Random(static_cast<size_t>(M) * ldc, 11 + K), want = got;
  if (beta == 0.0f) std::fill(got.begin(), got.end(), NAN);  // beta == 0 must not read C
  Gemm(Threads{threads}, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), ldc);
  ref::Gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, want.data(), ldc);
  std::vector<float> g, w, s;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      g.push_back(got[i * ldc + j]);
      w.push_back(want[i * ldc + j]);
      s.push_back(static_cast<float>(std::fabs(alpha) * K + std::fabs(beta)));  // entries are in [-1, 1]
    }
  const std::string what = "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " M=" + std::to_string(M) +
                           " N=" + std::to_string(N) + " K=" + std::to_string(K);
  ExpectNear(g, w, s, kRel, 1e-7, what.c_str());
}

TEST(Gemm, TransposesStridesAndTails) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int M : {1, 7, 8, 33})
        for (int N : {1, 15, 49, 130})
          for (int K : {1, 5, 64, 300}) CheckGemm(ta, tb, M, N, K, 0.75f, (M + K) % 2 ? 0.5f : 0.0f, (N % 2) + 1);
}

TEST(Gemm, EveryTarget) {
  ForEachTarget([&] {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) CheckGemm(ta, tb, 13, 50, 37, 0.75f, ta ? 0.5f : 0.0f, 2);
  });
}

TEST(Gemm, LargeMultiThreaded) {
  CheckGemm(false, true, 200, 300, 520, 1.0f, 0.0f, 2);
  CheckGemm(true, false, 300, 20, 260, 1.0f, 1.0f, 2);  // few columns: split over rows
  CheckGemm(false, false, 64, 1200, 100, -1.0f, 1.0f, 1);
}

TEST(Gemm, ZeroKScalesC) { CheckGemm(false, false, 5, 6, 0, 1.0f, 0.5f, 1); }

}  // namespace
}  // namespace subq::ops
