// Helpers of the CUDA op tests: device buffers, random data, bf16 rounding, error norms, and the fixture
// that skips (never passes) every test when no CUDA device is present.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "ops/cuda/cuda_ops.h"

namespace subq::cuda::test {

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) { SUBQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), (count ? count : 1) * sizeof(T))); }
  explicit DevBuf(const std::vector<T>& h) : DevBuf(h.size()) { Put(h); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  void Put(const std::vector<T>& h) { SUBQ_CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> Get() const {
    std::vector<T> h(n);
    SUBQ_CUDA_CHECK(cudaDeviceSynchronize());
    SUBQ_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  // NaN bytes: every output element the kernel fails to write shows up in the comparison.
  void Poison() { SUBQ_CUDA_CHECK(cudaMemset(p, 0xff, n * sizeof(T))); }
};

inline std::vector<float> Randn(size_t n, std::mt19937& rng, float sd = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> d(mean, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
inline float RoundBF16(float f) { return __bfloat162float(__float2bfloat16(f)); }
inline std::vector<bf16> ToBf(const std::vector<float>& v) {
  std::vector<bf16> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __float2bfloat16(v[i]);
  return o;
}
inline std::vector<float> FromBf(const std::vector<bf16>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __bfloat162float(v[i]);
  return o;
}
inline std::vector<float> Rounded(std::vector<float> v) {
  for (auto& x : v) x = RoundBF16(x);
  return v;
}
// ||out - ref|| / ||ref||; infinite when any output is NaN or unwritten.
inline double RelErr(const std::vector<float>& out, const std::vector<float>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    num += (double(out[i]) - ref[i]) * (double(out[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1.0));
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = DeviceUnavailableReason();
    if (!why.empty()) GTEST_SKIP() << why;
  }
  std::mt19937 rng{1234};
};

// Records a relative error in the test's XML/console output and checks it against the stated tolerance.
#define EXPECT_REL(out, ref, tol)                                      \
  do {                                                                 \
    const double e_ = ::subq::cuda::test::RelErr(out, ref);            \
    ::testing::Test::RecordProperty(#out "_rel_err", std::to_string(e_)); \
    std::printf("  [%s] rel err %s = %.3g (tol %.g)\n",                \
                ::testing::UnitTest::GetInstance()->current_test_info()->name(), #out, e_, double(tol)); \
    EXPECT_LE(e_, tol);                                                \
  } while (0)

}  // namespace subq::cuda::test
