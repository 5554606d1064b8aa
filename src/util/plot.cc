// The python3 subprocess behind util/plot.h. The script's text comes from scripts/plot.py through a
// header CMake generates (plot_script.h), so the binary draws the same charts wherever it runs.
#include "util/plot.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "plot_script.h"
#include "util/npy.h"

extern char** environ;

namespace subq {

Status RunPlotScript(const std::vector<std::string>& args) {
  const char* env = std::getenv("SUBQ_PYTHON");
  const std::string python = env && *env ? env : "python3";
  std::vector<std::string> argv_s = {python, "-c", kPlotScript};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string out = "the chart";
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--out") out = args[i + 1];
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ);
  if (rc != 0)
    return Errorf("{}: cannot run '{}' to draw it: {} (charts need python3 with matplotlib; set SUBQ_PYTHON to "
                  "choose the interpreter)", out, python, std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return Errorf("{}: waiting for {}: {}", out, python, std::strerror(errno));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
    return Errorf("{}: not drawn: matplotlib is not installed for '{}' (pip install matplotlib)", out, python);
  return Errorf("{}: not drawn: {} plot.py {} failed (exit {}; its message is above)", out, python,
                args.empty() ? "" : args[0], WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

Status PlotHeatmapsPng(const Tensor& mats, const std::vector<std::string>& captions, const std::string& title,
                       const std::string& path, bool separate_scales) {
  static std::atomic<int> counter{0};
  std::error_code ec;
  const std::filesystem::path npy = std::filesystem::temp_directory_path(ec) /
                                    fmt::format("subq-plot-{}-{}.npy", getpid(), counter++);
  SUBQ_RETURN_IF_ERROR(WriteNpy(mats, npy.string()));
  std::vector<std::string> args = {"heatmap", "--npy", npy.string(), "--title", title, "--out", path};
  for (const std::string& c : captions) args.insert(args.end(), {"--caption", c});
  if (separate_scales) args.push_back("--separate-scales");
  Status st = RunPlotScript(args);
  std::filesystem::remove(npy, ec);
  return st;
}

}  // namespace subq
