// Plots are written to a temp dir (or $SUBQ_PNG_TEST_OUT to keep them for viewing) and read back
// with libpng: size, not blank, heatmap cell colours, shared vs per-panel scale, error reporting.
#include "util/png.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

namespace subq {
namespace {

std::string OutPath(const std::string& name) {
  const char* keep = std::getenv("SUBQ_PNG_TEST_OUT");
  std::filesystem::path dir = keep ? std::filesystem::path(keep) : std::filesystem::path(::testing::TempDir()) / "subq_png";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

RgbImage ReadBack(const std::string& path) {
  auto r = ReadPngRgb(path);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : RgbImage{};
}

int64_t CountColour(const RgbImage& img, Rgb c) {
  int64_t n = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) n += img.At(x, y) == c;
  return n;
}

int64_t CountNonWhite(const RgbImage& img) { return img.width * int64_t{img.height} - CountColour(img, kWhite); }

// First pixel of colour c in raster order (top row first), or (-1, -1).
std::pair<int, int> FindFirst(const RgbImage& img, Rgb c, int x_from = 0) {
  for (int y = 0; y < img.height; ++y)
    for (int x = x_from; x < img.width; ++x)
      if (img.At(x, y) == c) return {x, y};
  return {-1, -1};
}

Tensor Ramp(int rows, int cols, float scale = 1.0f) {  // m[r, c] = (r * cols + c) * scale
  Tensor t({rows, cols});
  for (int i = 0; i < rows * cols; ++i) t.data[i] = i * scale;
  return t;
}

struct CellGrid {
  int x0 = -1, y0 = -1, cw = 0, ch = 0;
};

// Locates a heatmap whose top-left cell holds the minimum value (colour `c00`), searching from x_from.
CellGrid LocateGrid(const RgbImage& img, Rgb c00, int x_from = 0) {
  CellGrid g;
  std::tie(g.x0, g.y0) = FindFirst(img, c00, x_from);
  if (g.x0 < 0) return g;
  while (g.x0 + g.cw < img.width && img.At(g.x0 + g.cw, g.y0) == c00) ++g.cw;
  while (g.y0 + g.ch < img.height && img.At(g.x0, g.y0 + g.ch) == c00) ++g.ch;
  return g;
}

Rgb CellColour(const RgbImage& img, const CellGrid& g, int r, int c) {
  return img.At(g.x0 + c * g.cw + g.cw / 2, g.y0 + r * g.ch + g.ch / 2);
}

TEST(PngTest, ViridisEndsAndMonotoneLightness) {
  EXPECT_EQ(ViridisColor(0.0), (Rgb{68, 1, 84}));
  EXPECT_EQ(ViridisColor(1.0), (Rgb{253, 231, 37}));
  EXPECT_EQ(ViridisColor(-3.0), ViridisColor(0.0));
  EXPECT_EQ(ViridisColor(7.0), ViridisColor(1.0));
  int prev = -1;
  for (int i = 0; i <= 32; ++i) {
    Rgb c = ViridisColor(i / 32.0);
    int l = c[0] * 3 + c[1] * 6 + c[2];
    EXPECT_GE(l, prev) << i;
    prev = l;
  }
}

TEST(PngTest, LineChartHasSizeAxesAndSeriesColours) {
  Series a{"train loss", {}, {}}, b{"eval loss (every 50 steps)", {}, {}};
  for (int i = 0; i <= 400; ++i) {
    a.x.push_back(i);
    a.y.push_back(4.0 * std::exp(-i / 80.0) + 0.3 + 0.05 * std::sin(i * 0.7));
  }
  a.y[100] = NAN, a.y[101] = INFINITY;  // skipped, never a crash
  for (int i = 0; i <= 400; i += 50) b.x.push_back(i), b.y.push_back(4.2 * std::exp(-i / 90.0) + 0.4);
  const std::string path = OutPath("line.png");
  Status st = WriteLineChartPng({a, b}, "Distillation loss, stage 3", path, "step", "loss");
  ASSERT_TRUE(st.ok()) << st.message();
  RgbImage img = ReadBack(path);
  EXPECT_EQ(img.width, 800);
  EXPECT_EQ(img.height, 500);
  EXPECT_GT(CountNonWhite(img), 5000);
  EXPECT_GT(CountColour(img, {31, 119, 180}), 300);  // series 0 (tab:blue) line
  EXPECT_GT(CountColour(img, {255, 127, 14}), 100);  // series 1 (tab:orange) line and markers
  // Title text is dark pixels in the top band.
  int64_t dark_top = 0;
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < img.width; ++x) dark_top += img.At(x, y)[0] < 100;
  EXPECT_GT(dark_top, 100);
}

TEST(PngTest, LineChartLogScaleAndSmallRanges) {
  Series s{"ppl", {}, {}};
  for (int i = 1; i <= 100; ++i) s.x.push_back(i), s.y.push_back(1000.0 / i);
  s.y[5] = -1.0;  // not drawable on a log axis: skipped
  ASSERT_TRUE(WriteLineChartPng({s}, "log y", OutPath("line_log.png"), "step", "perplexity", true).ok());
  Series narrow{"", {0, 1, 2}, {2.0, 2.5, 3.0}};  // < 1 decade: 1/2/5 ticks
  ASSERT_TRUE(WriteLineChartPng({narrow}, "narrow log", OutPath("line_log_narrow.png"), "", "", true).ok());
  Series flat{"flat", {5}, {1e-7}};  // one point: a marker, padded range
  ASSERT_TRUE(WriteLineChartPng({flat}, "one point", OutPath("line_one.png")).ok());
  RgbImage img = ReadBack(OutPath("line_one.png"));
  EXPECT_GT(CountColour(img, {31, 119, 180}), 10);
}

TEST(PngTest, LineChartErrors) {
  const std::string ok_path = OutPath("unused.png");
  EXPECT_FALSE(WriteLineChartPng({}, "t", ok_path).ok());
  Status mism = WriteLineChartPng({Series{"m", {1, 2, 3}, {1, 2}}}, "t", ok_path);
  EXPECT_FALSE(mism.ok());
  EXPECT_NE(mism.message().find("'m'"), std::string::npos) << mism.message();
  EXPECT_FALSE(WriteLineChartPng({Series{"nan", {1, 2}, {NAN, INFINITY}}}, "t", ok_path).ok());
  EXPECT_FALSE(WriteLineChartPng({Series{"neg", {1, 2}, {-1, 0}}}, "t", ok_path, "", "", true).ok());
  Status bad = WriteLineChartPng({Series{"a", {1, 2}, {1, 2}}}, "t", "/nonexistent_dir_subq/x.png");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("/nonexistent_dir_subq/x.png"), std::string::npos) << bad.message();
}

TEST(PngTest, LineChartsSideBySideWithLogX) {
  const std::string path = OutPath("line_panels.png");
  LineChart ctx{{Series{"a", {128, 512, 4096, 16384}, {40, 39, NAN, 38}}}, "decode", "context", "tok/s", true, false};
  LineChart bat{{Series{"a", {1, 8, 32}, {40, 300, 1100}}, Series{"b", {1, 8, 32}, {50, 200, 300}}}, "batch", "B",
                "tok/s", true, true};
  Status st = WriteLineChartsPng({ctx, bat}, path);
  ASSERT_TRUE(st.ok()) << st.message();
  RgbImage img = ReadBack(path);
  EXPECT_EQ(img.width, 1600);
  EXPECT_EQ(img.height, 500);
  int64_t left_blue = 0, right_orange = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      left_blue += x < 800 && img.At(x, y) == Rgb{31, 119, 180};
      right_orange += x >= 800 && img.At(x, y) == Rgb{255, 127, 14};
    }
  EXPECT_GT(left_blue, 100);
  EXPECT_GT(right_orange, 100);
  EXPECT_FALSE(WriteLineChartsPng({}, path).ok());
  LineChart neg_x{{Series{"n", {-1, 0}, {1, 2}}}, "t", "", "", true, false};  // no positive x on a log axis
  EXPECT_FALSE(WriteLineChartsPng({ctx, neg_x}, path).ok());
}

TEST(PngTest, HeatmapCellsHaveTheColourOfTheirValue) {
  const std::string path = OutPath("heatmap.png");
  Tensor m = Ramp(8, 8);  // 0..63
  ASSERT_TRUE(WriteHeatmapPng(m, path, "mixing matrix, layer 0 head 0").ok());
  RgbImage img = ReadBack(path);
  CellGrid g = LocateGrid(img, ViridisColor(0.0));
  ASSERT_GE(g.x0, 0);
  EXPECT_GE(g.cw, 4);  // 8x8 matrices must be visible
  EXPECT_EQ(g.cw, g.ch);
  EXPECT_GE(img.width, 8 * g.cw);
  for (auto [r, c] : {std::pair{0, 7}, {3, 5}, {5, 3}, {7, 0}, {7, 7}})
    EXPECT_EQ(CellColour(img, g, r, c), ViridisColor((r * 8 + c) / 63.0)) << r << "," << c;
  EXPECT_GT(CountNonWhite(img), 64 * g.cw * g.ch + 500);  // cells plus colour bar, labels, title
}

TEST(PngTest, HeatmapNonFiniteCellsAreGreyAndThinMatricesReadable) {
  Tensor m = Ramp(6, 6);
  m.data[7] = NAN;  // cell (1, 1)
  ASSERT_TRUE(WriteHeatmapPng(m, OutPath("heatmap_nan.png")).ok());
  RgbImage img = ReadBack(OutPath("heatmap_nan.png"));
  CellGrid g = LocateGrid(img, ViridisColor(0.0));
  ASSERT_GE(g.x0, 0);
  EXPECT_EQ(CellColour(img, g, 1, 1), (Rgb{160, 160, 160}));
  EXPECT_EQ(CellColour(img, g, 5, 5), ViridisColor(1.0));

  ASSERT_TRUE(WriteHeatmapPng(Ramp(1, 3, 1.0f), OutPath("heatmap_thin.png"), "[1, 3]").ok());
  Tensor big = Ramp(3000, 5);  // block-averaged down to at most 1024 rows
  big.shape = {1, 3000, 5};    // leading dims of size 1 are accepted
  ASSERT_TRUE(WriteHeatmapPng(big, OutPath("heatmap_big.png"), "big").ok());
  RgbImage b = ReadBack(OutPath("heatmap_big.png"));
  EXPECT_LT(b.height, 1200);
  EXPECT_GE(b.height, 1000);
}

TEST(PngTest, HeatmapErrors) {
  const std::string path = OutPath("unused.png");
  EXPECT_FALSE(WriteHeatmapPng(Tensor(), path).ok());
  EXPECT_FALSE(WriteHeatmapPng(Tensor({0, 4}), path).ok());
  EXPECT_FALSE(WriteHeatmapPng(Tensor({2, 3, 3}), path).ok());  // 3-D with leading dim 2
  Tensor nan({2, 2});
  for (float& v : nan.data) v = NAN;
  Status st = WriteHeatmapPng(nan, path);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("finite"), std::string::npos) << st.message();
  Tensor bad({4, 4});
  bad.data.resize(5);
  EXPECT_FALSE(WriteHeatmapPng(bad, path).ok());
  EXPECT_FALSE(WriteHeatmapPng(Ramp(2, 2), "/nonexistent_dir_subq/h.png").ok());
  EXPECT_FALSE(WriteHeatmapsPng({}, {}, path).ok());
  EXPECT_FALSE(WriteHeatmapsPng({Ramp(2, 2), Ramp(2, 2)}, {"only one"}, path).ok());
  EXPECT_FALSE(WriteHeatmapsPng({Ramp(2, 2), nan}, {"a", "b"}, path).ok());
}

TEST(PngTest, HeatmapsSharedAndSeparateScales) {
  std::vector<Tensor> mats = {Ramp(8, 8), Ramp(8, 8, 0.5f)};  // teacher 0..63, student 0..31.5
  std::vector<std::string> caps = {"teacher (attention)", "student (Mamba-2)"};
  for (bool shared : {true, false}) {
    const std::string path = OutPath(shared ? "heatmaps_shared.png" : "heatmaps_separate.png");
    ASSERT_TRUE(WriteHeatmapsPng(mats, caps, path, "layer 3, head 1", shared).ok());
    RgbImage img = ReadBack(path);
    CellGrid a = LocateGrid(img, ViridisColor(0.0));
    ASSERT_GE(a.x0, 0);
    CellGrid b = LocateGrid(img, ViridisColor(0.0), a.x0 + 8 * a.cw + 1);
    ASSERT_GE(b.x0, 0);
    EXPECT_EQ(a.y0, b.y0);
    EXPECT_EQ(a.cw, b.cw);
    EXPECT_EQ(CellColour(img, a, 7, 7), ViridisColor(1.0));
    EXPECT_EQ(CellColour(img, b, 7, 7), ViridisColor(shared ? 0.5 : 1.0)) << "shared=" << shared;
    EXPECT_EQ(CellColour(img, b, 4, 0), ViridisColor(shared ? 16.0 / 63 : 32.0 / 63)) << "shared=" << shared;
  }
  // Many panels wrap into several rows.
  std::vector<Tensor> heads(12, Ramp(16, 16));
  ASSERT_TRUE(WriteHeatmapsPng(heads, {}, OutPath("heatmaps_12.png"), "12 heads").ok());
  RgbImage img = ReadBack(OutPath("heatmaps_12.png"));
  EXPECT_LE(img.width, 1600);
  EXPECT_GT(img.height, 2 * 16 * 4);
}

}  // namespace
}  // namespace subq
