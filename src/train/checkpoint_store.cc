#include "train/checkpoint_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace subq::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kPrefix = "ckpt-";

Status WriteAll(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errorf("{}: write failed after {} of {} bytes: {}", path, done, bytes.size(),
                              std::strerror(n < 0 ? errno : ENOSPC));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return Errorf("{}: fsync failed: {}", path, std::strerror(errno));
  return Status::Ok();
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Errorf("{}: cannot open", path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) return Errorf("{}: read error", path);
  return s;
}

}  // namespace

Status WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errorf("{}: cannot create: {}", tmp, std::strerror(errno));
  Status st = WriteAll(fd, bytes, tmp);
  if (::close(fd) != 0 && st.ok()) st = Errorf("{}: close failed: {}", tmp, std::strerror(errno));
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    st = Errorf("{}: cannot rename into place: {}", path, std::strerror(errno));
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  const int dfd = ::open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: makes the rename durable
    ::close(dfd);
  }
  return Status::Ok();
}

CheckpointStore::CheckpointStore(const std::string& out_dir, int keep)
    : dir_((fs::path(out_dir) / "checkpoints").string()), keep_(std::max(1, keep)) {}

std::string CheckpointStore::PathOf(const CheckpointManifest& m) const { return (fs::path(dir_) / m.file).string(); }

bool CheckpointStore::Empty() const {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec))
    if (e.path().extension() == ".json" && e.path().filename().string().rfind(kPrefix, 0) == 0) return false;
  return true;
}

std::vector<CheckpointManifest> CheckpointStore::List(std::vector<std::string>* problems) const {
  std::vector<CheckpointManifest> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".json" || name.rfind(kPrefix, 0) != 0) continue;
    auto text = ReadFile(e.path().string());
    auto m = text.ok() ? ParseCheckpointManifest(*text, e.path().string()) : Result<CheckpointManifest>(text.status());
    if (m.ok()) out.push_back(std::move(*m));
    else problems->push_back(m.status().message());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq > b.seq; });
  return out;
}

Result<std::string> CheckpointStore::ReadVerified(const CheckpointManifest& m) const {
  const std::string path = PathOf(m);
  SUBQ_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  if (bytes.size() != m.bytes)
    return Errorf("{}: {} bytes but its manifest says {} (truncated?)", path, bytes.size(), m.bytes);
  const uint32_t crc = Crc32(bytes.data(), bytes.size());
  if (crc != m.crc32) return Errorf("{}: CRC-32 {:08x} does not match its manifest's {:08x}", path, crc, m.crc32);
  return bytes;
}

Status CheckpointStore::Save(const std::string& bytes, CheckpointManifest m) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return Errorf("{}: cannot create the checkpoint folder: {}", dir_, ec.message());
  std::vector<std::string> ignored;
  const std::vector<CheckpointManifest> old = List(&ignored);
  m.seq = old.empty() ? 1 : old.front().seq + 1;
  m.file = fmt::format("{}{:06d}.pt", kPrefix, m.seq);
  m.bytes = bytes.size();
  m.crc32 = Crc32(bytes.data(), bytes.size());
  const std::string manifest = (fs::path(dir_) / fmt::format("{}{:06d}.json", kPrefix, m.seq)).string();
  const char* kept = old.empty() ? "" : "; the previous checkpoint is intact";
  if (Status st = WriteFileAtomically(PathOf(m), bytes); !st.ok())
    return Errorf("cannot write checkpoint: {}{}", st.message(), kept);
  if (Status st = WriteFileAtomically(manifest, m.ToJson()); !st.ok()) {
    fs::remove(PathOf(m), ec);
    return Errorf("cannot write checkpoint manifest: {}{}", st.message(), kept);
  }
  // Keep the newest `keep_` (the one just written among them).
  for (size_t i = static_cast<size_t>(keep_) - 1; i < old.size(); ++i) {
    fs::remove(fs::path(dir_) / fmt::format("{}{:06d}.json", kPrefix, old[i].seq), ec);
    fs::remove(PathOf(old[i]), ec);
  }
  return Status::Ok();
}

}  // namespace subq::train
