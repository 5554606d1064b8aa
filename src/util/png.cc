#include "util/png.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace subq {
namespace {

constexpr Rgb kAxis = {60, 60, 60};
constexpr Rgb kGrid = {225, 225, 225};
constexpr Rgb kGridMinor = {242, 242, 242};
constexpr Rgb kText = {20, 20, 20};
constexpr Rgb kNanGrey = {160, 160, 160};
// matplotlib's tab10 cycle.
constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                            {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

// ---------------------------------------------------------------- numbers and ticks

std::string StripZeros(std::string s) {  // "2.500" -> "2.5", "3.0" -> "3"
  if (s.find('.') == std::string::npos) return s;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// Short human label with `digits` significant digits: fixed notation for 1e-3 <= |v| < 1e6 ("1000",
// "0.25"), else (or when `sci`) a compact exponent ("1e-5", "2.5e7").
std::string FormatNumber(double v, int digits = 4, bool sci = false) {
  if (v == 0 || !std::isfinite(v)) return v == 0 ? "0" : fmt::format("{}", v);
  digits = std::clamp(digits, 1, 12);
  const double a = std::fabs(v);
  if (!sci && a >= 1e-3 && a < 1e6) {
    const int decimals = std::max(0, digits - 1 - static_cast<int>(std::floor(std::log10(a))));
    std::string s = StripZeros(fmt::format("{:.{}f}", v, decimals));
    return s == "-0" ? "0" : s;
  }
  std::string s = fmt::format("{:.{}e}", v, digits - 1);
  const size_t e = s.find('e');
  std::string mant = StripZeros(s.substr(0, e)), exp = s.substr(e + 1);
  const bool neg = exp[0] == '-';
  size_t i = (exp[0] == '-' || exp[0] == '+') ? 1 : 0;
  while (i + 1 < exp.size() && exp[i] == '0') ++i;
  return mant + "e" + (neg ? "-" : "") + exp.substr(i);
}

// Ticks at multiples of a 1/2/5 x 10^k step covering [lo, hi], about `target` of them.
std::vector<double> NiceTicks(double lo, double hi, int target, double* step_out = nullptr) {
  std::vector<double> ticks;
  if (!(hi > lo) || target < 1) return ticks;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1) {
    double v = k * step;
    if (std::fabs(v) < step * 1e-9) v = 0;
    ticks.push_back(v);
    if (ticks.size() > 1000) break;
  }
  if (step_out) *step_out = step;
  return ticks;
}

// Labels for ticks `step` apart, all in one notation: fixed with the decimals the step needs, or (for
// |values| >= 1e5 or < 1e-3) exponents with enough mantissa digits to tell neighbours apart.
std::vector<std::string> TickLabels(const std::vector<double>& ticks, double step) {
  double maxabs = 0;
  for (double t : ticks) maxabs = std::max(maxabs, std::fabs(t));
  std::vector<std::string> out;
  if (maxabs == 0 || step <= 0) {
    for (double t : ticks) out.push_back(FormatNumber(t));
    return out;
  }
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  const bool sci = maxabs >= 1e5 || maxabs < 1e-3;
  for (double t : ticks) {
    if (t == 0) out.push_back("0");
    else if (sci) out.push_back(FormatNumber(t, static_cast<int>(std::floor(std::log10(std::fabs(t)))) - step_exp + 1, true));
    else out.push_back(fmt::format("{:.{}f}", t, std::max(0, -step_exp)));
  }
  return out;
}

struct Axis {
  double lo = 0, hi = 1;              // data range (log10 of data when log)
  bool log = false;
  std::vector<double> ticks;          // in axis units
  std::vector<std::string> labels;
  std::vector<double> minor;          // grid-only ticks (log axes)
};

void LinearTicks(Axis* a, int target) {
  double step = 0;
  a->ticks = NiceTicks(a->lo, a->hi, target, &step);
  a->labels = TickLabels(a->ticks, step);
}

// Labels for log-axis ticks (values, not exponents): one notation for the whole axis.
std::vector<std::string> LogLabels(const std::vector<double>& log_ticks) {
  bool sci = false;
  for (double t : log_ticks) sci |= t >= 5 - 1e-9 || t < -3 - 1e-9;
  std::vector<std::string> out;
  for (double t : log_ticks) out.push_back(FormatNumber(std::pow(10.0, t), 3, sci));
  return out;
}

void LogTicks(Axis* a, int target) {
  a->ticks.clear(), a->labels.clear(), a->minor.clear();
  const int k0 = static_cast<int>(std::ceil(a->lo - 1e-9)), k1 = static_cast<int>(std::floor(a->hi + 1e-9));
  if (k1 - k0 + 1 >= 2) {  // whole decades
    const int stride = std::max(1, (k1 - k0 + target) / target);
    for (int k = k0; k <= k1; k += stride) a->ticks.push_back(k);
    a->labels = LogLabels(a->ticks);
    if (k1 - k0 <= 4)
      for (int k = k0 - 1; k <= k1; ++k)
        for (int m = 2; m <= 9; ++m) a->minor.push_back(k + std::log10(m));
    return;
  }
  // Less than two decades: try 1/2/5 x 10^k, then 1..9 x 10^k, else linear ticks in value space.
  for (const std::vector<int>& ms : {std::vector<int>{1, 2, 5}, std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
    std::vector<double> t;
    for (int k = k0 - 1; k <= k1; ++k)
      for (int m : ms) {
        double v = k + std::log10(m);
        if (v >= a->lo - 1e-9 && v <= a->hi + 1e-9) t.push_back(v);
      }
    if (t.size() >= 3 && static_cast<int>(t.size()) <= target + 2) {
      a->ticks = t;
      a->labels = LogLabels(t);
      return;
    }
  }
  double step = 0;
  std::vector<double> lin = NiceTicks(std::pow(10.0, a->lo), std::pow(10.0, a->hi), target, &step);
  const std::vector<std::string> labels = TickLabels(lin, step);
  for (size_t i = 0; i < lin.size(); ++i)
    if (lin[i] > 0) a->ticks.push_back(std::log10(lin[i])), a->labels.push_back(labels[i]);
}

// Title text and scale that fit `width` (shrinks to scale 1, then truncates with "..").
std::string FitText(const std::string& s, int width, int* scale) {
  *scale = Canvas::TextWidth(s, 2) <= width ? 2 : 1;
  if (*scale == 2 || Canvas::TextWidth(s, 1) <= width) return s;
  const size_t keep = std::max<int>(0, width / Canvas::TextWidth("x") - 2);
  return s.substr(0, keep) + "..";
}

// ---------------------------------------------------------------- line chart

struct Pt {
  double x, y;
};

// Finite points of one series in axis units, with line breaks (nullopt-like) marked by NaN.
std::vector<Pt> AxisPoints(const Series& s, bool log_x, bool log_y) {
  std::vector<Pt> pts;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (size_t i = 0; i < s.x.size(); ++i) {
    double x = s.x[i], y = s.y[i];
    bool ok = std::isfinite(x) && std::isfinite(y) && (!log_x || x > 0) && (!log_y || y > 0);
    if (ok) pts.push_back({log_x ? std::log10(x) : x, log_y ? std::log10(y) : y});
    else if (!pts.empty() && !std::isnan(pts.back().x)) pts.push_back({nan, nan});
  }
  return pts;
}

void PadRange(double* lo, double* hi, double frac) {
  if (*hi == *lo) {
    double d = *lo == 0 ? 1.0 : std::fabs(*lo) * 0.1;
    *lo -= d, *hi += d;
    return;
  }
  double d = (*hi - *lo) * frac;
  *lo -= d, *hi += d;
}

}  // namespace

Rgb ViridisColor(double t) {
  // matplotlib viridis sampled at 17 points, linearly interpolated.
  static constexpr uint8_t kV[17][3] = {{68, 1, 84},    {72, 24, 106},  {71, 45, 123},  {66, 64, 134},  {59, 82, 139},
                                        {51, 99, 141},  {44, 114, 142}, {38, 130, 142}, {33, 145, 140}, {31, 160, 136},
                                        {40, 174, 128}, {63, 188, 115}, {94, 201, 98},  {132, 212, 75}, {173, 220, 48},
                                        {216, 226, 25}, {253, 231, 37}};
  if (!std::isfinite(t)) return kNanGrey;
  t = std::clamp(t, 0.0, 1.0) * 16;
  const int i = std::min(15, static_cast<int>(t));
  const double f = t - i;
  Rgb c;
  for (int k = 0; k < 3; ++k) c[k] = static_cast<uint8_t>(std::lround(kV[i][k] + (kV[i + 1][k] - kV[i][k]) * f));
  return c;
}

namespace {

// One 800x500 chart; `path` only names the file in errors.
Result<Canvas> DrawLineChart(const LineChart& chart, const std::string& path) {
  const std::vector<Series>& series = chart.series;
  const std::string &title = chart.title, &x_label = chart.x_label, &y_label = chart.y_label;
  const bool log_x = chart.log_x, log_y = chart.log_y;
  if (series.empty()) return Errorf("WriteLineChartPng({}): no series", path);
  std::vector<std::vector<Pt>> pts;
  Axis ax, ay;
  ax.log = log_x, ay.log = log_y;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  bool any_name = false;
  for (const Series& s : series) {
    if (s.x.size() != s.y.size())
      return Errorf("WriteLineChartPng({}): series '{}' has {} x values but {} y values", path, s.name, s.x.size(),
                    s.y.size());
    pts.push_back(AxisPoints(s, log_x, log_y));
    for (const Pt& p : pts.back())
      if (!std::isnan(p.x)) xlo = std::min(xlo, p.x), xhi = std::max(xhi, p.x), ylo = std::min(ylo, p.y), yhi = std::max(yhi, p.y);
    any_name |= !s.name.empty();
  }
  if (!(xlo <= xhi))
    return Errorf("WriteLineChartPng({}): no finite{} point in {} series", path,
                  log_x || log_y ? " positive" : "", series.size());
  if (chart.y_from_zero && !log_y) ylo = std::min(ylo, 0.0);
  ax.lo = xlo, ax.hi = xhi, ay.lo = ylo, ay.hi = yhi;
  PadRange(&ax.lo, &ax.hi, 0.02);
  PadRange(&ay.lo, &ay.hi, 0.05);
  if (log_y && yhi == ylo) ay.lo = ylo - 0.5, ay.hi = yhi + 0.5;  // one value: show a decade around it
  if (log_x && xhi == xlo) ax.lo = xlo - 0.5, ax.hi = xhi + 0.5;

  const int W = 800, H = 500, th = Canvas::TextHeight();
  int title_scale = 1;
  const std::string title_fit = FitText(title, W - 20, &title_scale);
  const int top = title.empty() ? 16 : 12 + Canvas::TextHeight(title_scale) + 12;

  if (log_y) LogTicks(&ay, 8);
  else LinearTicks(&ay, 8);
  int ylab_w = 0;
  for (auto& l : ay.labels) ylab_w = std::max(ylab_w, Canvas::TextWidth(l));
  const int left = 10 + (y_label.empty() ? 0 : th + 8) + ylab_w + 8;
  const int bottom = 6 + 4 + th + (x_label.empty() ? 0 : 8 + th) + 10;
  // x ticks: reduce the count until the labels have room between them.
  int right = 24, pw = 0;
  for (int target = 9; target >= 2; --target) {
    if (log_x) LogTicks(&ax, target);
    else LinearTicks(&ax, target);
    int maxw = 0;
    for (auto& l : ax.labels) maxw = std::max(maxw, Canvas::TextWidth(l));
    right = std::max(24, maxw / 2 + 8);
    pw = W - left - right;
    if (static_cast<int>(ax.ticks.size()) * (maxw + 16) <= pw) break;
  }
  const int ph = H - top - bottom;
  auto px = [&](double x) { return left + (x - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto py = [&](double y) { return top + (ay.hi - y) / (ay.hi - ay.lo) * ph; };

  Canvas cv(W, H);
  if (!title.empty()) cv.Text((W - Canvas::TextWidth(title_fit, title_scale)) / 2, 12, title_fit, kText, title_scale);
  // Grid, ticks and tick labels.
  for (double m : ay.minor)
    if (m > ay.lo && m < ay.hi) cv.HLine(left, left + pw - 1, static_cast<int>(std::lround(py(m))), kGridMinor);
  for (size_t i = 0; i < ay.ticks.size(); ++i) {
    const int y = static_cast<int>(std::lround(py(ay.ticks[i])));
    cv.HLine(left, left + pw - 1, y, kGrid);
    cv.HLine(left - 5, left - 1, y, kAxis);
    cv.Text(left - 8 - Canvas::TextWidth(ay.labels[i]), y - th / 2, ay.labels[i], kText);
  }
  for (size_t i = 0; i < ax.ticks.size(); ++i) {
    const int x = static_cast<int>(std::lround(px(ax.ticks[i])));
    cv.VLine(x, top, top + ph - 1, kGrid);
    cv.VLine(x, top + ph, top + ph + 4, kAxis);
    cv.Text(x - Canvas::TextWidth(ax.labels[i]) / 2, top + ph + 8, ax.labels[i], kText);
  }
  cv.StrokeRect(left - 1, top - 1, pw + 2, ph + 2, kAxis);
  if (!x_label.empty()) {
    std::string xl = x_label.substr(0, std::max(0, pw / Canvas::TextWidth("x")));
    cv.Text(left + (pw - Canvas::TextWidth(xl)) / 2, H - 10 - th, xl, kText);
  }
  if (!y_label.empty()) {
    std::string yl = y_label.substr(0, std::max(0, ph / Canvas::TextWidth("x")));
    cv.TextVertical(10, top + (ph - Canvas::TextWidth(yl)) / 2, yl, kText);
  }
  // Data, clipped to the plot area.
  cv.SetClip(left, top, pw, ph);
  for (size_t s = 0; s < pts.size(); ++s) {
    const Rgb c = kPalette[s % kPaletteSize];
    const auto& p = pts[s];
    int finite = 0;
    for (const Pt& q : p) finite += !std::isnan(q.x);
    for (size_t i = 0; i < p.size(); ++i) {
      if (std::isnan(p[i].x)) continue;
      const bool prev = i > 0 && !std::isnan(p[i - 1].x), next = i + 1 < p.size() && !std::isnan(p[i + 1].x);
      if (next) cv.Line(px(p[i].x), py(p[i].y), px(p[i + 1].x), py(p[i + 1].y), c, 2.0);
      if (finite <= 20 || (!prev && !next)) cv.FillCircle(px(p[i].x), py(p[i].y), 3.0, c);
    }
  }
  cv.ResetClip();
  // Legend in the corner that covers the fewest data samples.
  if (any_name) {
    int name_w = 0;
    for (const Series& s : series) name_w = std::max(name_w, Canvas::TextWidth(s.name.empty() ? "-" : s.name));
    name_w = std::min(name_w, pw / 2);
    const int row_h = th + 4, lw = 8 + 24 + 6 + name_w + 8, lh = 6 + row_h * static_cast<int>(series.size()) + 4;
    const int cx[4] = {left + pw - lw - 8, left + 8, left + 8, left + pw - lw - 8};
    const int cy[4] = {top + 8, top + 8, top + ph - lh - 8, top + ph - lh - 8};
    int best = 0;
    long best_hits = -1;
    for (int k = 0; k < 4; ++k) {
      long hits = 0;
      for (const auto& p : pts)
        for (size_t i = 0; i + 1 < p.size(); ++i)
          for (int f = 0; f <= 8 && !std::isnan(p[i].x) && !std::isnan(p[i + 1].x); ++f) {
            double x = px(p[i].x + (p[i + 1].x - p[i].x) * f / 8), y = py(p[i].y + (p[i + 1].y - p[i].y) * f / 8);
            hits += x >= cx[k] && x < cx[k] + lw && y >= cy[k] && y < cy[k] + lh;
          }
      if (best_hits < 0 || hits < best_hits) best = k, best_hits = hits;
    }
    cv.FillRect(cx[best], cy[best], lw, lh, kWhite);
    cv.StrokeRect(cx[best], cy[best], lw, lh, {180, 180, 180});
    const int max_chars = std::max(1, name_w / Canvas::TextWidth("x"));
    for (size_t s = 0; s < series.size(); ++s) {
      const int y = cy[best] + 6 + row_h * static_cast<int>(s);
      const Rgb c = kPalette[s % kPaletteSize];
      cv.Line(cx[best] + 8, y + th / 2.0, cx[best] + 32, y + th / 2.0, c, 2.0);
      std::string name = series[s].name.empty() ? "-" : series[s].name;
      if (static_cast<int>(name.size()) > max_chars) name = name.substr(0, std::max(1, max_chars - 2)) + "..";
      cv.Text(cx[best] + 38, y, name, kText);
    }
  }
  return cv;
}

}  // namespace

Status WriteLineChartPng(const std::vector<Series>& series, const std::string& title, const std::string& path,
                         const std::string& x_label, const std::string& y_label, bool log_y) {
  return WriteLineChartsPng({LineChart{series, title, x_label, y_label, false, log_y, false}}, path);
}

Status WriteLineChartsPng(const std::vector<LineChart>& panels, const std::string& path) {
  if (panels.empty()) return Errorf("WriteLineChartPng({}): no chart", path);
  std::vector<Canvas> drawn;
  for (const LineChart& c : panels) {
    SUBQ_ASSIGN_OR_RETURN(Canvas cv, DrawLineChart(c, path));
    drawn.push_back(std::move(cv));
  }
  Canvas all(drawn[0].width() * static_cast<int>(drawn.size()), drawn[0].height());
  for (size_t k = 0; k < drawn.size(); ++k) {
    const int x0 = static_cast<int>(k) * drawn[k].width();
    for (int y = 0; y < drawn[k].height(); ++y)
      for (int x = 0; x < drawn[k].width(); ++x) all.Set(x0 + x, y, drawn[k].image().At(x, y));
  }
  return WritePngRgb(all.image(), path);
}

namespace {

// ---------------------------------------------------------------- heatmaps

constexpr int kMaxSide = 1024;  // larger matrices are block-averaged down to this many cells per side

// A matrix ready to draw: finite-aware block averages of the original, with its original size.
struct Grid {
  int64_t rows = 0, cols = 0;            // drawn cells
  int64_t orig_rows = 0, orig_cols = 0;  // tensor shape
  std::vector<float> v;                  // [rows, cols]
  double lo = INFINITY, hi = -INFINITY;  // finite range
};

Result<Grid> MakeGrid(const Tensor& t, const std::string& what) {
  if (t.empty()) return Errorf("{}: empty tensor (shape {})", what, ShapeStr(t.shape));
  if (t.shape.size() < 2) return Errorf("{}: expected a 2-D tensor [rows, cols], got shape {}", what, ShapeStr(t.shape));
  for (size_t i = 0; i + 2 < t.shape.size(); ++i)
    if (t.shape[i] != 1)
      return Errorf("{}: expected a 2-D tensor [rows, cols] (leading dims 1), got shape {}", what, ShapeStr(t.shape));
  if (Tensor::NumelOf(t.shape) != t.numel())
    return Errorf("{}: shape {} needs {} values but tensor holds {}", what, ShapeStr(t.shape), Tensor::NumelOf(t.shape),
                  t.numel());
  Grid g;
  g.orig_rows = t.dim(-2), g.orig_cols = t.dim(-1);
  const int64_t f = std::max<int64_t>(1, (std::max(g.orig_rows, g.orig_cols) + kMaxSide - 1) / kMaxSide);
  g.rows = (g.orig_rows + f - 1) / f, g.cols = (g.orig_cols + f - 1) / f;
  g.v.assign(g.rows * g.cols, NAN);
  for (int64_t r = 0; r < g.rows; ++r)
    for (int64_t c = 0; c < g.cols; ++c) {
      double sum = 0;
      int n = 0;
      for (int64_t i = r * f; i < std::min(g.orig_rows, (r + 1) * f); ++i)
        for (int64_t j = c * f; j < std::min(g.orig_cols, (c + 1) * f); ++j) {
          const float x = t.data[i * g.orig_cols + j];
          if (std::isfinite(x)) sum += x, ++n;
        }
      if (n == 0) continue;
      const float m = static_cast<float>(sum / n);
      g.v[r * g.cols + c] = m;
      g.lo = std::min<double>(g.lo, m), g.hi = std::max<double>(g.hi, m);
    }
  if (!(g.lo <= g.hi)) return Errorf("{}: no finite value in tensor of shape {}", what, ShapeStr(t.shape));
  return g;
}

double Normalize(double v, double lo, double hi) { return hi > lo ? (v - lo) / (hi - lo) : 0.5; }

// Integer index ticks for an axis of n original elements drawn over `px` pixels.
std::vector<int64_t> IndexTicks(int64_t n, int px) {
  std::vector<int64_t> out;
  if (n <= 1) return {0};
  const int target = std::clamp(px / 40, 2, 8);
  for (double t : NiceTicks(0, static_cast<double>(n - 1), target))
    if (t >= 0 && std::floor(t) == t) out.push_back(static_cast<int64_t>(t));
  if (out.empty()) out.push_back(0);
  return out;
}

struct PanelGeom {
  int cell_w = 1, cell_h = 1;  // pixels per drawn cell
};

PanelGeom CellSize(int64_t max_rows, int64_t max_cols, int target_px) {
  PanelGeom g;
  const int64_t side = std::max(max_rows, max_cols);
  const int cell = static_cast<int>(std::clamp<int64_t>(target_px / side, 1, 32));
  g.cell_w = g.cell_h = cell;
  // Keep thin matrices (e.g. [4, 512]) readable: at least 48 px on the short side.
  if (max_rows * g.cell_h < 48) g.cell_h = static_cast<int>(std::min<int64_t>(32, (48 + max_rows - 1) / max_rows));
  if (max_cols * g.cell_w < 48) g.cell_w = static_cast<int>(std::min<int64_t>(32, (48 + max_cols - 1) / max_cols));
  return g;
}

int RowLabelWidth(const Grid& g) { return Canvas::TextWidth(std::to_string(std::max<int64_t>(0, g.orig_rows - 1))) + 8; }

// Heatmap cells at (x0, y0) plus row ticks to the left and column ticks below.
void DrawGrid(Canvas* cv, const Grid& g, int x0, int y0, const PanelGeom& pg, double lo, double hi) {
  for (int64_t r = 0; r < g.rows; ++r)
    for (int64_t c = 0; c < g.cols; ++c) {
      const float v = g.v[r * g.cols + c];
      const Rgb col = std::isfinite(v) ? ViridisColor(Normalize(v, lo, hi)) : kNanGrey;
      cv->FillRect(x0 + static_cast<int>(c) * pg.cell_w, y0 + static_cast<int>(r) * pg.cell_h, pg.cell_w, pg.cell_h,
                   col);
    }
  const int w = static_cast<int>(g.cols) * pg.cell_w, h = static_cast<int>(g.rows) * pg.cell_h;
  const int th = Canvas::TextHeight();
  const double sx = static_cast<double>(w) / g.orig_cols, sy = static_cast<double>(h) / g.orig_rows;
  int last_y = -1000;
  for (int64_t r : IndexTicks(g.orig_rows, h)) {
    const int y = y0 + static_cast<int>((r + 0.5) * sy);
    if (y - last_y < th) continue;
    last_y = y;
    cv->HLine(x0 - 4, x0 - 1, y, kAxis);
    const std::string s = std::to_string(r);
    cv->Text(x0 - 6 - Canvas::TextWidth(s), y - th / 2, s, kText);
  }
  int last_right = -1000;
  for (int64_t c : IndexTicks(g.orig_cols, w)) {
    const int x = x0 + static_cast<int>((c + 0.5) * sx);
    const std::string s = std::to_string(c);
    const int lx = x - Canvas::TextWidth(s) / 2;
    if (lx < last_right + 6) continue;
    last_right = lx + Canvas::TextWidth(s);
    cv->VLine(x, y0 + h, y0 + h + 3, kAxis);
    cv->Text(lx, y0 + h + 5, s, kText);
  }
}

constexpr int kBarGap = 12, kBarW = 14;

std::vector<std::string> BarLabels(double lo, double hi, int h) {
  std::vector<std::string> l = {FormatNumber(hi, 4), FormatNumber(lo, 4)};
  if (h >= 90 && hi > lo) l.push_back(FormatNumber((lo + hi) / 2, 4));
  return l;
}

int BarWidth(double lo, double hi, int h) {
  int w = 0;
  for (auto& s : BarLabels(lo, hi, h)) w = std::max(w, Canvas::TextWidth(s));
  return kBarGap + kBarW + 5 + w;
}

// Vertical colour bar (max on top) with max / min (and mid when tall enough) labels on its right.
void DrawColorBar(Canvas* cv, int x0, int y0, int h, double lo, double hi) {
  const int x = x0 + kBarGap, th = Canvas::TextHeight();
  for (int y = 0; y < h; ++y) cv->HLine(x, x + kBarW - 1, y0 + y, ViridisColor(1.0 - static_cast<double>(y) / std::max(1, h - 1)));
  cv->StrokeRect(x - 1, y0 - 1, kBarW + 2, h + 2, kAxis);
  const auto labels = BarLabels(lo, hi, h);
  cv->Text(x + kBarW + 5, y0, labels[0], kText);
  cv->Text(x + kBarW + 5, y0 + h - th, labels[1], kText);
  if (labels.size() > 2) cv->Text(x + kBarW + 5, y0 + (h - th) / 2, labels[2], kText);
}

}  // namespace

Status WriteHeatmapsPng(const std::vector<Tensor>& mats, const std::vector<std::string>& captions,
                        const std::string& path, const std::string& title, bool shared_scale) {
  if (mats.empty()) return Errorf("WriteHeatmapsPng({}): no matrices", path);
  if (!captions.empty() && captions.size() != mats.size())
    return Errorf("WriteHeatmapsPng({}): {} captions for {} matrices", path, captions.size(), mats.size());
  std::vector<Grid> grids;
  double lo = INFINITY, hi = -INFINITY;
  int64_t max_rows = 0, max_cols = 0;
  for (size_t i = 0; i < mats.size(); ++i) {
    SUBQ_ASSIGN_OR_RETURN(Grid g, MakeGrid(mats[i], fmt::format("WriteHeatmapsPng({}) matrix {}", path, i)));
    lo = std::min(lo, g.lo), hi = std::max(hi, g.hi);
    max_rows = std::max(max_rows, g.rows), max_cols = std::max(max_cols, g.cols);
    grids.push_back(std::move(g));
  }
  const int n = static_cast<int>(grids.size()), th = Canvas::TextHeight();
  const PanelGeom pg = CellSize(max_rows, max_cols, n <= 2 ? 320 : n <= 4 ? 256 : 176);
  const int hm_w = static_cast<int>(max_cols) * pg.cell_w, hm_h = static_cast<int>(max_rows) * pg.cell_h;
  const int bar_h = std::max(hm_h, 60);
  // One slot per panel: [row labels | heatmap (| own colour bar)], caption above, column labels below.
  bool any_caption = false;
  int row_lab = 0, cap_w = 0, own_bar = 0;
  for (int i = 0; i < n; ++i) {
    row_lab = std::max(row_lab, RowLabelWidth(grids[i]));
    if (!captions.empty() && !captions[i].empty()) any_caption = true, cap_w = std::max(cap_w, Canvas::TextWidth(captions[i]));
    if (!shared_scale) own_bar = std::max(own_bar, BarWidth(grids[i].lo, grids[i].hi, bar_h));
  }
  cap_w = std::min(cap_w, 400);
  const int slot_w = row_lab + std::max(hm_w + own_bar, cap_w), gap = 24;
  const int slot_h = (any_caption ? th + 6 : 0) + std::max(hm_h, shared_scale ? 0 : bar_h) + 5 + th;
  const int shared_bar = shared_scale ? BarWidth(lo, hi, bar_h) : 0;
  int per_row = n;
  while (per_row > 1 && 20 + per_row * slot_w + (per_row - 1) * gap + shared_bar > 1600) --per_row;
  const int grid_rows = (n + per_row - 1) / per_row;
  const int content_w = 20 + per_row * slot_w + (per_row - 1) * gap + shared_bar + 10;
  // Room for the title at double size when that stays under 800 px, else at normal size.
  const int title_w = title.empty() ? 0
                      : Canvas::TextWidth(title, 2) + 20 <= 800 ? Canvas::TextWidth(title, 2) + 20
                                                                : Canvas::TextWidth(title) + 20;
  const int W = std::max(content_w, title_w);
  int title_scale = 1;
  const std::string title_fit = FitText(title, W - 20, &title_scale);
  const int top = title.empty() ? 10 : 10 + Canvas::TextHeight(title_scale) + 10;
  const int H = top + grid_rows * slot_h + (grid_rows - 1) * gap + std::max(0, bar_h - hm_h) + 16;

  Canvas cv(W, H);
  if (!title.empty()) cv.Text((W - Canvas::TextWidth(title_fit, title_scale)) / 2, 10, title_fit, kText, title_scale);
  const int x_start = 10 + (W - content_w) / 2;
  int hm_top0 = 0;
  for (int i = 0; i < n; ++i) {
    const int sx = x_start + (i % per_row) * (slot_w + gap), sy = top + (i / per_row) * (slot_h + gap);
    const int hx = sx + row_lab, hy = sy + (any_caption ? th + 6 : 0);
    if (i == 0) hm_top0 = hy;
    if (!captions.empty() && !captions[i].empty()) {
      std::string cap = captions[i];
      const int max_chars = std::max(1, (slot_w - row_lab) / Canvas::TextWidth("x"));
      if (static_cast<int>(cap.size()) > max_chars) cap = cap.substr(0, std::max(1, max_chars - 2)) + "..";
      const int cw = Canvas::TextWidth(cap);
      cv.Text(std::max(sx, hx + (hm_w - cw) / 2), sy, cap, kText);
    }
    const Grid& g = grids[i];
    const double glo = shared_scale ? lo : g.lo, ghi = shared_scale ? hi : g.hi;
    DrawGrid(&cv, g, hx, hy, pg, glo, ghi);
    if (!shared_scale) DrawColorBar(&cv, hx + static_cast<int>(g.cols) * pg.cell_w, hy, bar_h, glo, ghi);
  }
  if (shared_scale) DrawColorBar(&cv, x_start + per_row * slot_w + (per_row - 1) * gap, hm_top0, bar_h, lo, hi);
  return WritePngRgb(cv.image(), path);
}

Status WriteHeatmapPng(const Tensor& m2d, const std::string& path, const std::string& title) {
  return WriteHeatmapsPng({m2d}, {}, path, title, true);
}

}  // namespace subq
