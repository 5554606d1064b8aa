// The last K checkpoints of a run, in OUT/checkpoints/: ckpt-<seq>.pt (the bytes the trainer
// serialised) and its manifest ckpt-<seq>.json (io/checkpoint_manifest.h: size, CRC-32, per-record
// CRC-32s, run fingerprint). Files are written to a temp name, synced and renamed, the manifest last,
// so a checkpoint counts only once it is complete; a failed write (disk full) removes its partial files
// and leaves the earlier checkpoints as they were. No torch here.
#pragma once
#include <string>
#include <vector>

#include "io/checkpoint_manifest.h"
#include "util/status.h"

namespace subq::train {

class CheckpointStore {
 public:
  CheckpointStore(const std::string& out_dir, int keep);

  // True when the folder holds no checkpoint manifest.
  bool Empty() const;
  // Writes `bytes` as the next checkpoint (m.seq, m.file, m.bytes and m.crc32 are filled in here), then
  // removes all but the newest `keep` checkpoints.
  Status Save(const std::string& bytes, CheckpointManifest m);
  // Readable manifests, newest first; an unreadable one is skipped and described in *problems.
  std::vector<CheckpointManifest> List(std::vector<std::string>* problems) const;
  // The checkpoint file of `m`, after checking its size and CRC-32.
  Result<std::string> ReadVerified(const CheckpointManifest& m) const;
  std::string PathOf(const CheckpointManifest& m) const;

 private:
  std::string dir_;
  int keep_;
};

// Writes `bytes` to `path` through a temp file in the same folder: write, fsync, rename, fsync the
// folder. Every failure (ENOSPC, EFBIG, EIO) is an error naming the path; the temp file is removed.
Status WriteFileAtomically(const std::string& path, const std::string& bytes);

}  // namespace subq::train
