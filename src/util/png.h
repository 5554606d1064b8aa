// PNG plots written from C++ (libpng + a built-in bitmap font): line charts and heatmaps for training
// curves and mixing matrices. No Python at run time. Drawing primitives live in util/canvas.h.
#pragma once
#include <string>
#include <vector>

#include "util/canvas.h"
#include "util/status.h"
#include "util/tensor.h"

namespace subq {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// Line chart (800x500) with axes, numeric tick labels, title, axis labels and a legend (placed in the
// emptiest corner of the plot). Non-finite points are skipped and break the line; with log_y, points
// with y <= 0 are skipped too. Series with 20 points or fewer also get markers.
// Errors: no series, x/y length mismatch, no drawable point at all, cannot write `path`.
Status WriteLineChartPng(const std::vector<Series>& series, const std::string& title, const std::string& path,
                         const std::string& x_label = "", const std::string& y_label = "", bool log_y = false);

// A line chart as WriteLineChartPng draws it; log axes show decades (values, not exponents).
struct LineChart {
  std::vector<Series> series;
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  bool y_from_zero = false;  // linear y axis starts at 0 (a flat line then looks flat)
};
// Several line charts side by side in one PNG (each 800x500), e.g. two panels of one benchmark.
// Errors: no chart, and those of WriteLineChartPng for any chart.
Status WriteLineChartsPng(const std::vector<LineChart>& charts, const std::string& path);

// Heatmap of a 2-D tensor [rows, cols] (leading dimensions of size 1 are allowed). Viridis colours
// scaled min..max over finite values, a colour bar with min/max labels, row/column index ticks and a
// title on top. Cells are enlarged so small matrices are readable (an 8x8 matrix gets 32-px cells);
// matrices larger than 1024 on a side are block-averaged. Non-finite cells are drawn grey.
// Errors: empty tensor, not 2-D, data/shape mismatch, no finite value, cannot write `path`.
Status WriteHeatmapPng(const Tensor& m2d, const std::string& path, const std::string& title = "");

// Several heatmaps side by side (wrapped into rows when there are many), each with its caption above
// it (e.g. teacher vs student mixing matrix). With shared_scale one colour range and one colour bar
// serve all panels; otherwise each panel has its own. `captions` is empty or one per matrix.
Status WriteHeatmapsPng(const std::vector<Tensor>& mats, const std::vector<std::string>& captions,
                        const std::string& path, const std::string& title = "", bool shared_scale = true);

// Viridis colour of t in [0, 1] (clamped); the heatmap cell of value v has ViridisColor((v-min)/(max-min)).
Rgb ViridisColor(double t);

}  // namespace subq
