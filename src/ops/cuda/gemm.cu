// bf16 GEMM with f32 accumulate through cuBLASLt. Row-major y[M, N] = x[M, K] W^T is, column-major,
// y^T[N, M] = W[N, K] (as a K x N column-major matrix, transposed) times x^T (K x M): a "TN" product.
// Algorithm choices are cached per (M, N, K, ldx, ldy, accumulate) so that a captured decode step
// replays without heuristics queries.
#include <cublasLt.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <tuple>

#include "ops/cuda/common.cuh"

namespace subq::cuda {
namespace {

void CheckLt(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cuBLASLt error %d in %s\n", static_cast<int>(st), what);
    std::abort();
  }
}

constexpr size_t kWorkspaceBytes = 32u << 20;

}  // namespace

struct Gemm::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  using Key = std::tuple<int, int, int, int, int, int, bool>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  std::map<Key, Plan> plans;

  const Plan& Get(int M, int N, int K, int ldx, int ldw, int ldy, bool acc) {
    const Key key{M, N, K, ldx, ldw, ldy, acc};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    Plan p;
    CheckLt(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CheckLt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "TRANSA");
    CheckLt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "TRANSB");
    CheckLt(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, K, N, ldw), "layout W");
    CheckLt(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, K, M, ldx), "layout x");
    CheckLt(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, N, M, ldy), "layout y");
    cublasLtMatmulPreference_t pref;
    CheckLt(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
    size_t ws = kWorkspaceBytes;
    CheckLt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
            "pref workspace");
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    CheckLt(cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found), "heuristic");
    cublasLtMatmulPreferenceDestroy(pref);
    if (found == 0) {
      std::fprintf(stderr, "cuBLASLt: no algorithm for M=%d N=%d K=%d\n", M, N, K);
      std::abort();
    }
    p.algo = res.algo;
    return plans.emplace(key, p).first->second;
  }
};

Gemm::Gemm() : impl_(new Impl) {
  CheckLt(cublasLtCreate(&impl_->handle), "cublasLtCreate");
  SUBQ_CUDA_CHECK(cudaMalloc(&impl_->workspace, kWorkspaceBytes));
}

Gemm::~Gemm() {
  for (auto& [k, p] : impl_->plans) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  cudaFree(impl_->workspace);
  cublasLtDestroy(impl_->handle);
  delete impl_;
}

void Gemm::Run(cudaStream_t stream, const bf16* x, int ldx, int M, const bf16* w, int N, int K, float* y, int ldy,
               bool accumulate) {
  const Impl::Plan& p = impl_->Get(M, N, K, ldx, K, ldy, accumulate);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  CheckLt(cublasLtMatmul(impl_->handle, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                         impl_->workspace, kWorkspaceBytes, stream),
          "cublasLtMatmul");
}

}  // namespace subq::cuda
