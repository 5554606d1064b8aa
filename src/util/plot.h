// Charts (PNG) are drawn by matplotlib: scripts/plot.py, built into the binary, run in a python3
// subprocess ($SUBQ_PYTHON, default python3) on the data the tools write (NPY matrices, metrics.jsonl,
// bench JSON). The engine draws nothing itself; without python3 or matplotlib each call returns an error
// saying what to install.
#pragma once
#include <string>
#include <vector>

#include "util/status.h"
#include "util/tensor.h"

namespace subq {

// Runs plot.py with `args` (its subcommand and flags, see the script's help); an error names the
// output and says why (python3 missing, matplotlib missing, the script's own message on stderr).
Status RunPlotScript(const std::vector<std::string>& args);

// Heatmaps of `mats` ([L, L] or [N, L, L]), one caption per panel (or none), one colour scale for all
// panels unless separate_scales. The matrices go through a temporary .npy file.
Status PlotHeatmapsPng(const Tensor& mats, const std::vector<std::string>& captions, const std::string& title,
                       const std::string& path, bool separate_scales = false);

}  // namespace subq
