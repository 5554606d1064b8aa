// The NCCL process group for data-parallel training on CUDA, in its own file: it is the only code that
// needs CUDA and NCCL headers (CMake compiles it with them when the torch wheel's nvidia packages
// provide them, and defines SUBQ_HAVE_NCCL).
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "util/status.h"

namespace subq::train {

// A ProcessGroupNCCL on the current CUDA device; an error when this build has no NCCL.
Result<c10::intrusive_ptr<c10d::Backend>> MakeNcclBackend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                          int world, int timeout_s);

}  // namespace subq::train
