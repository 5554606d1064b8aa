// The output folder of a training run: created and checked writable before any training starts, and
// held with an exclusive lock for the whole run so that a second run (or a --resume) cannot write into
// it at the same time. No torch here.
#pragma once
#include <string>

#include "util/status.h"

namespace subq::train {

// Creates `dir` if needed and proves it writable by creating, writing, syncing and removing a probe
// file (so an unwritable --out or a full disk is reported before training, not at the first checkpoint).
Status PrepareOutputDir(const std::string& dir);

// An exclusive flock(2) on DIR/.subq.lock, which holds the owner's pid. The kernel releases it when the
// process exits in any way (also SIGKILL), so a stale lock never blocks a later run.
class RunDirLock {
 public:
  // Fails, naming the holder's pid, when another process holds the lock.
  static Result<RunDirLock> Acquire(const std::string& dir);
  RunDirLock(RunDirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  RunDirLock& operator=(RunDirLock&& o) noexcept;
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;
  ~RunDirLock();

 private:
  explicit RunDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace subq::train
