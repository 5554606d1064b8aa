// Output of `subq bench`: machine info, JSON, the text table, and the two-panel PNG (drawn by plot.py).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sys/resource.h>
#include <unistd.h>
#include <thread>

#include "eval/bench.h"
#include "util/plot.h"

namespace subq {
namespace {

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

double MemKb(const std::string& key) {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1));
  return 0;
}

std::string Mb(size_t b) { return fmt::format("{:.1f} MB", b / 1e6); }

// "" for a measured cell; the skip reason otherwise (JSON readers see which and why).
nlohmann::json SkipOr(const std::string& skip, nlohmann::json j) {
  if (!skip.empty()) j["skipped"] = skip;
  return j;
}

}  // namespace

nlohmann::json MachineInfo() {
  double load[3] = {0, 0, 0};
  std::ifstream("/proc/loadavg") >> load[0] >> load[1] >> load[2];
  return {{"cpu", CpuModel()},
          {"cores", std::thread::hardware_concurrency()},
          {"load_average", {load[0], load[1], load[2]}},
          {"mem_total_bytes", MemKb("MemTotal") * 1024},
          {"mem_available_bytes", MemKb("MemAvailable") * 1024}};
}

nlohmann::json BenchJson(const std::vector<ModelBench>& rs, const BenchOptions& o) {
  nlohmann::json models = nlohmann::json::array();
  for (const ModelBench& r : rs) {
    nlohmann::json pre = nlohmann::json::array(), bat = nlohmann::json::array();
    for (const PrefillCell& c : r.prefill) {
      nlohmann::json j = {{"length", c.length}};
      if (c.skip.empty()) {
        j.update({{"prefill_tok_s", c.tok_s}, {"ttft_s", c.ttft_s}, {"state_bytes", c.state_bytes},
                  {"state_capacity_bytes", c.state_capacity_bytes}});
        if (c.decode_skip.empty()) j["decode_tok_s"] = c.decode_tok_s;
        else j["decode_skipped"] = c.decode_skip;
      }
      pre.push_back(SkipOr(c.skip, j));
    }
    for (const BatchCell& c : r.batch) {
      nlohmann::json j = {{"batch", c.batch}};
      if (c.skip.empty())
        j.update({{"tok_s_per_seq", c.tok_s_per_seq}, {"aggregate_tok_s", c.aggregate_tok_s},
                  {"state_bytes_per_seq", c.state_bytes_per_seq},
                  {"state_capacity_bytes_per_seq", c.state_capacity_bytes_per_seq}});
      bat.push_back(SkipOr(c.skip, j));
    }
    models.push_back({{"model", r.name},
                      {"family", r.family},
                      {"context_limit", r.context_limit ? nlohmann::json(r.context_limit) : nlohmann::json()},
                      {"weight_bytes", r.weight_bytes},
                      {"workspace_bytes", r.workspace_bytes},
                      {"peak_rss_bytes", r.peak_rss_bytes},
                      {"warmup_s", r.warmup_s},
                      {"prefill", pre},
                      {"batch", bat}});
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {{"machine", MachineInfo()},
          {"device", o.device},
          {"process_peak_rss_bytes", static_cast<size_t>(ru.ru_maxrss) * 1024},  // getrusage, all models
          {"options",
           {{"threads", o.threads}, {"prompt_lengths", o.prompt_lengths}, {"batches", o.batches},
            {"gen", o.gen}, {"batch_context", o.batch_context}, {"max_tokens", o.max_tokens}}},
          {"models", models}};
}

std::string BenchTable(const ModelBench& r, const BenchOptions& o) {
  std::string s = fmt::format("{} ({}): weights {}, context limit {}, workspace {}, peak RSS {}\n", r.name,
                              r.family, Mb(r.weight_bytes), r.context_limit ? std::to_string(r.context_limit) : "none",
                              Mb(r.workspace_bytes), Mb(r.peak_rss_bytes));
  s += fmt::format("  {:>7} {:>14} {:>10} {:>16} {:>14} {:>14}\n", "prompt", "prefill tok/s", "TTFT ms",
                   "decode tok/s", "state bytes", "capacity");
  for (const PrefillCell& c : r.prefill) {
    if (!c.skip.empty()) {
      s += fmt::format("  {:>7} {}\n", c.length, c.skip);
      continue;
    }
    const std::string dec = c.decode_skip.empty() ? fmt::format("{:.1f}", c.decode_tok_s) : "skipped";
    s += fmt::format("  {:>7} {:>14.1f} {:>10.1f} {:>16} {:>14} {:>14}\n", c.length, c.tok_s, c.ttft_s * 1e3, dec,
                     c.state_bytes, c.state_capacity_bytes);
    if (!c.decode_skip.empty()) s += fmt::format("  {:>7} decode after it: {}\n", "", c.decode_skip);
  }
  s += fmt::format("  decode of {} tokens after {} tokens of context, B sequences together:\n", o.gen,
                   o.batch_context);
  s += fmt::format("  {:>7} {:>14} {:>16} {:>14} {:>14}\n", "batch", "tok/s per seq", "aggregate tok/s",
                   "state bytes", "capacity");
  for (const BatchCell& c : r.batch) {
    if (!c.skip.empty()) s += fmt::format("  {:>7} {}\n", c.batch, c.skip);
    else
      s += fmt::format("  {:>7} {:>14.1f} {:>16.1f} {:>14} {:>14}\n", c.batch, c.tok_s_per_seq, c.aggregate_tok_s,
                       c.state_bytes_per_seq, c.state_capacity_bytes_per_seq);
  }
  return s;
}

Status WriteBenchPng(const std::vector<ModelBench>& rs, const BenchOptions& o, const std::string& path) {
  // The chart is drawn from the JSON this file writes (plot.py bench), through a temporary copy.
  std::error_code ec;
  const std::filesystem::path json = std::filesystem::temp_directory_path(ec) / fmt::format("subq-bench-{}.json", getpid());
  {
    std::ofstream f(json);
    f << BenchJson(rs, o).dump();
    if (!f) return Errorf("{}: cannot write the bench data for the plot", json.string());
  }
  Status st = RunPlotScript({"bench", "--json", json.string(), "--out", path});
  std::filesystem::remove(json, ec);
  return st;
}

}  // namespace subq
