#include "train/distributed.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "train/distill.h"
#include "train/distributed_nccl.h"

namespace subq::train {
namespace {

Result<int> EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > 1 << 20) return Errorf("environment variable {}='{}' is not a valid number", name, v);
  return static_cast<int>(x);
}

bool IsLoopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0; }

Result<int> FreeLocalPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Errorf("cannot open a socket to find a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return Errorf("cannot bind a local socket to find a free port");
  }
  ::close(fd);
  return static_cast<int>(ntohs(a.sin_port));
}

}  // namespace

Result<DistEnv> DistEnvFromEnvironment() {
  DistEnv e;
  SUBQ_ASSIGN_OR_RETURN(e.world, EnvInt("WORLD_SIZE", 1));
  SUBQ_ASSIGN_OR_RETURN(e.rank, EnvInt("RANK", 0));
  SUBQ_ASSIGN_OR_RETURN(e.local_rank, EnvInt("LOCAL_RANK", e.rank));
  SUBQ_ASSIGN_OR_RETURN(e.master_port, EnvInt("MASTER_PORT", 29500));
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  if (const char* s = std::getenv("TORCHELASTIC_USE_AGENT_STORE")) e.agent_store = std::string(s) == "True";
  if (e.world < 1) return Errorf("WORLD_SIZE must be >= 1");
  if (e.rank >= e.world) return Errorf("RANK {} is not below WORLD_SIZE {}", e.rank, e.world);
  if (e.master_port < 1 || e.master_port > 65535) return Errorf("MASTER_PORT {} is not a port", e.master_port);
  return e;
}

Result<std::unique_ptr<DataParallel>> DataParallel::Join(const DistEnv& env, const torch::Device& dev, int timeout_s) {
  std::unique_ptr<DataParallel> dp(new DataParallel());
  dp->env_ = env;
  dp->dev_ = dev;
  if (env.world == 1) return dp;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0 && !env.agent_store;
    so.numWorkers = env.world;
    so.timeout = std::chrono::seconds(timeout_s);
    auto store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    if (dev.is_cuda()) {
      SUBQ_ASSIGN_OR_RETURN(dp->pg_, MakeNcclBackend(store, env.rank, env.world, timeout_s));
    } else {
      auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(timeout_s));
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (IsLoopback(env.master_addr))
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      dp->pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world, opts);
    }
  } catch (const std::exception& e) {
    return Errorf("rank {} of {}: cannot join the process group at {}:{}: {}", env.rank, env.world, env.master_addr,
                  env.master_port, e.what());
  }
  return dp;
}

DataParallel::~DataParallel() = default;

void DataParallel::AverageGradients(const std::vector<torch::Tensor>& params, int64_t bucket_bytes) {
  if (env_.world == 1) return;
  // Buckets of same-dtype gradients in parameter order.
  std::vector<std::vector<torch::Tensor>> buckets;
  std::map<c10::ScalarType, size_t> open;  // dtype -> index of its bucket being filled
  std::map<size_t, int64_t> filled;
  for (const auto& p : params) {
    torch::Tensor g = p.grad();
    if (!g.defined()) continue;  // a parameter this stage does not reach (same on every rank)
    auto it = open.find(g.scalar_type());
    if (it == open.end() || filled[it->second] + g.nbytes() > static_cast<size_t>(bucket_bytes)) {
      buckets.emplace_back();
      it = open.insert_or_assign(g.scalar_type(), buckets.size() - 1).first;
    }
    buckets[it->second].push_back(g);
    filled[it->second] += static_cast<int64_t>(g.nbytes());
  }
  std::vector<std::vector<torch::Tensor>> flat(buckets.size());
  std::vector<c10::intrusive_ptr<c10d::Work>> work;
  for (size_t b = 0; b < buckets.size(); ++b) {
    flat[b] = {torch::cat([&] {
      std::vector<torch::Tensor> v;
      for (auto& g : buckets[b]) v.push_back(g.reshape({-1}));
      return v;
    }())};
    c10d::AllreduceOptions ao;
    ao.reduceOp = c10d::ReduceOp::SUM;
    work.push_back(pg_->allreduce(flat[b], ao));
  }
  for (size_t b = 0; b < buckets.size(); ++b) {
    work[b]->wait();
    flat[b][0].div_(env_.world);
    int64_t at = 0;
    for (auto& g : buckets[b]) {
      g.copy_(flat[b][0].narrow(0, at, g.numel()).view_as(g));
      at += g.numel();
    }
  }
}

void DataParallel::Broadcast(const std::vector<torch::Tensor>& tensors) {
  if (env_.world == 1) return;
  torch::NoGradGuard ng;
  for (const auto& t : tensors) {
    std::vector<torch::Tensor> v{t.detach()};
    c10d::BroadcastOptions bo;
    bo.rootRank = 0;
    pg_->broadcast(v, bo)->wait();
  }
}

void DataParallel::AverageInPlace(torch::Tensor& t) {
  if (env_.world == 1) return;
  std::vector<torch::Tensor> v{t};
  pg_->allreduce(v)->wait();
  t.div_(env_.world);
}

void DataParallel::Barrier() {
  if (env_.world == 1) return;
  pg_->barrier()->wait();
}

Result<std::vector<std::string>> OwnArguments() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  if (!f) return Errorf("cannot read /proc/self/cmdline to launch the ranks");
  std::vector<std::string> argv;
  for (std::string a; std::getline(f, a, '\0');) argv.push_back(a);
  return argv;
}

Status RunDistillLocalRanks(const DistillOptions& o) {
  SUBQ_ASSIGN_OR_RETURN(auto argv, OwnArguments());
  fmt::print(stderr, "[distill] launching {} data-parallel ranks on this host\n", o.nproc);
  return LaunchLocalRanks(o.nproc, argv);
}

Status LaunchLocalRanks(int nproc, const std::vector<std::string>& argv) {
  if (nproc < 1) return Errorf("--nproc must be >= 1");
  SUBQ_ASSIGN_OR_RETURN(int port, FreeLocalPort());
  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) return Errorf("cannot start rank {}: fork failed", r);
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv("/proc/self/exe", args.data());
      std::fprintf(stderr, "subq: error: rank %d: cannot exec /proc/self/exe\n", r);
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  // Wait for all; the first failure stops the rest (they would otherwise wait for it until the timeout).
  Status result = Status::Ok();
  for (size_t left = pids.size(); left > 0; --left) {
    int st = 0;
    const pid_t done = ::waitpid(-1, &st, 0);
    if (done < 0) break;
    const auto it = std::find(pids.begin(), pids.end(), done);
    if (it == pids.end()) {
      ++left;
      continue;
    }
    const int rank = static_cast<int>(it - pids.begin());
    *it = -1;
    const bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok && result.ok()) {
      result = WIFEXITED(st) ? Errorf("rank {} exited with status {}", rank, WEXITSTATUS(st))
                             : Errorf("rank {} was killed by signal {}", rank, WTERMSIG(st));
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGTERM);
    }
  }
  return result;
}

}  // namespace subq::train
