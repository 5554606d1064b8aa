// The run folder's pieces without training: the lock (second holder refused with the pid, released on
// close), the writability probe, keep-K checkpoints with checksums (damage detected, a failed write
// leaves earlier checkpoints intact) and fingerprint differences.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "train/checkpoint_store.h"
#include "train/run_dir.h"
#include "train/run_fingerprint.h"

namespace subq::train {
namespace {

namespace fs = std::filesystem;

fs::path FreshDir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / fmt::format("subq_run_dir_test_{}_{}", name, ::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(RunDirLock, SecondHolderIsRefusedWithThePid) {
  const fs::path d = FreshDir("lock");
  {
    auto first = RunDirLock::Acquire(d.string());
    ASSERT_TRUE(first.ok()) << first.status().message();
    auto second = RunDirLock::Acquire(d.string());  // flock is per open file: refused in-process too
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.status().message().find(fmt::format("pid {}", ::getpid())), std::string::npos)
        << second.status().message();
  }
  EXPECT_TRUE(RunDirLock::Acquire(d.string()).ok()) << "released when the holder closes it";
  fs::remove_all(d);
}

TEST(PrepareOutputDir, RefusesAFolderThatCannotBeCreated) {
  const fs::path d = FreshDir("prep");
  std::ofstream(d / "file") << "x";
  EXPECT_TRUE(PrepareOutputDir((d / "new" / "deeper").string()).ok());
  EXPECT_FALSE(PrepareOutputDir((d / "file" / "sub").string()).ok());
  fs::remove_all(d);
}

CheckpointManifest WithRecord(const std::string& progress) {
  CheckpointManifest m;
  m.progress = progress;
  m.records = {{"w", 1u}};
  m.fingerprint = {{"recipe", {{"seed", 7}}}};
  return m;
}

TEST(CheckpointStore, KeepsTheLastKAndDetectsDamage) {
  const fs::path d = FreshDir("store");
  CheckpointStore store(d.string(), 2);
  EXPECT_TRUE(store.Empty());
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(store.Save(std::string(1000 + i, static_cast<char>('a' + i)), WithRecord(fmt::format("s{}", i))).ok());
  std::vector<std::string> problems;
  auto list = store.List(&problems);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].progress, "s3");
  EXPECT_EQ(list[1].progress, "s2");
  EXPECT_TRUE(problems.empty());
  ASSERT_TRUE(store.ReadVerified(list[0]).ok());
  EXPECT_EQ(*store.ReadVerified(list[1]), std::string(1002, 'c'));
  {  // one flipped byte
    std::fstream f(store.PathOf(list[0]), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(500);
    f.put('Z');
  }
  auto bad = store.ReadVerified(list[0]);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("CRC-32"), std::string::npos) << bad.status().message();
  fs::resize_file(store.PathOf(list[1]), 10);
  bad = store.ReadVerified(list[1]);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("truncated"), std::string::npos) << bad.status().message();
  fs::remove_all(d);
}

TEST(CheckpointStore, AFailedWriteLeavesThePreviousCheckpointIntact) {
  const fs::path d = FreshDir("full");
  CheckpointStore store(d.string(), 2);
  ASSERT_TRUE(store.Save(std::string(4096, 'x'), WithRecord("first")).ok());
  // A file-size limit stands in for a full disk (EFBIG instead of ENOSPC).
  std::signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  getrlimit(RLIMIT_FSIZE, &old);
  rlimit small = old;
  small.rlim_cur = 8192;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const Status st = store.Save(std::string(100000, 'y'), WithRecord("second"));
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  std::signal(SIGXFSZ, SIG_DFL);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("previous checkpoint is intact"), std::string::npos) << st.message();
  std::vector<std::string> problems;
  auto list = store.List(&problems);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].progress, "first");
  EXPECT_EQ(*store.ReadVerified(list[0]), std::string(4096, 'x'));
  for (const auto& e : fs::directory_iterator(d / "checkpoints")) EXPECT_NE(e.path().extension(), ".tmp");
  fs::remove_all(d);
}

TEST(RunFingerprint, DifferencesNameTheDottedKeys) {
  const nlohmann::json a = {{"recipe", {{"seed", 7}, {"stages", {{"end_to_end", {{"lr", 0.001}}}}}}},
                            {"data_files", {{{"name", "a.txt"}, {"crc32", 1}}}}, {"world_size", 1}};
  nlohmann::json b = a;
  EXPECT_TRUE(FingerprintDifferences(a, b).empty());
  b["recipe"]["stages"]["end_to_end"]["lr"] = 0.002;
  b["data_files"][0]["crc32"] = 2;
  b["world_size"] = 2;
  const auto diffs = FingerprintDifferences(a, b);
  ASSERT_EQ(diffs.size(), 3u);
  EXPECT_EQ(diffs[0], "data_files[0].crc32: 1 -> 2");
  EXPECT_EQ(diffs[1], "recipe.stages.end_to_end.lr: 0.001 -> 0.002");
  EXPECT_EQ(diffs[2], "world_size: 1 -> 2");
}

}  // namespace
}  // namespace subq::train
