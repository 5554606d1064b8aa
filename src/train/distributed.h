// Data-parallel training through torch.distributed's c10d (ProcessGroupGloo on CPU, ProcessGroupNCCL on
// CUDA): every rank holds the whole student and teacher, reads its own slice of each global batch, and
// gradients are averaged by bucketed all-reduce before clipping and the optimiser step, so N ranks x
// micro-batch m take the same steps as 1 rank x N*m. Ranks meet through a c10d TCPStore at
// MASTER_ADDR:MASTER_PORT (torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT; TORCHELASTIC_USE_AGENT_STORE=True when torchrun's agent already serves the store).
// `subq distill --nproc N` launches N ranks of itself on this host with that environment.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "util/status.h"

namespace c10d {
class Backend;
}

namespace subq::train {

struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;  // torchrun's agent serves the TCPStore (rank 0 is a client too)
};

// The torchrun variables, or world 1 when RANK / WORLD_SIZE are unset. Errors name a malformed variable.
Result<DistEnv> DistEnvFromEnvironment();

class DataParallel {
 public:
  // Joins the group (blocks until every rank has joined or `timeout_s` passes). world 1 needs no store.
  static Result<std::unique_ptr<DataParallel>> Join(const DistEnv& env, const torch::Device& dev, int timeout_s);
  ~DataParallel();
  int rank() const { return env_.rank; }
  int world() const { return env_.world; }
  bool is_main() const { return env_.rank == 0; }

  // Averages the gradients of `params` over ranks: grads are packed into flat buckets of about
  // bucket_bytes (per dtype), all buckets are all-reduced asynchronously, then unpacked. No-op at world 1.
  void AverageGradients(const std::vector<torch::Tensor>& params, int64_t bucket_bytes = 25 << 20);
  // Copies rank 0's values of `tensors` to every rank (in place).
  void Broadcast(const std::vector<torch::Tensor>& tensors);
  // Mean of a tensor over ranks (in place; e.g. the step loss for logging).
  void AverageInPlace(torch::Tensor& t);
  void Barrier();

 private:
  DataParallel() = default;
  DistEnv env_;
  torch::Device dev_ = torch::kCPU;
  c10::intrusive_ptr<c10d::Backend> pg_;
};

// `subq distill --nproc N`: re-runs this executable N times (argv without --nproc) with the torchrun
// environment on a free local port, forwards their output, and returns 0 when every rank succeeded.
// When one rank fails the others are stopped. Errors: cannot spawn, a rank failed (its exit status).
Status LaunchLocalRanks(int nproc, const std::vector<std::string>& argv);

}  // namespace subq::train
