#include "train/distributed_nccl.h"

#ifdef SUBQ_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace subq::train {

Result<c10::intrusive_ptr<c10d::Backend>> MakeNcclBackend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                          int world, int timeout_s) {
#ifdef SUBQ_HAVE_NCCL
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = std::chrono::seconds(timeout_s);
  return c10::intrusive_ptr<c10d::Backend>(c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts));
#else
  return Errorf("data-parallel training on CUDA needs NCCL, and this build has none (rebuild with the CUDA torch "
                "wheel's nvidia-nccl and CUDA headers)");
#endif
}

}  // namespace subq::train
