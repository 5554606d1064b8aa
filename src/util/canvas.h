// A tiny RGB raster canvas for plots: filled rectangles, anti-aliased lines, 1-bit bitmap text
// (util/font.h) and PNG read/write through libpng. Used by util/png.cc; no Python at run time.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace subq {

using Rgb = std::array<uint8_t, 3>;

inline constexpr Rgb kWhite = {255, 255, 255};
inline constexpr Rgb kBlack = {0, 0, 0};

// An 8-bit RGB image, row-major, 3 bytes per pixel.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // [height, width, 3]

  Rgb At(int x, int y) const {
    const uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
    return {p[0], p[1], p[2]};
  }
};

// Writes `img` as an 8-bit RGB PNG. Errors name the path (cannot open, libpng failure).
Status WritePngRgb(const RgbImage& img, const std::string& path);
// Reads any PNG (palette, grey, 16-bit, alpha are converted) as 8-bit RGB.
Result<RgbImage> ReadPngRgb(const std::string& path);

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = kWhite);

  int width() const { return img_.width; }
  int height() const { return img_.height; }
  const RgbImage& image() const { return img_; }

  // Pixels outside the canvas (or outside the clip rectangle) are ignored.
  void Set(int x, int y, Rgb c);
  // Blends `c` over the pixel with opacity `alpha` in [0, 1].
  void Blend(int x, int y, Rgb c, double alpha);
  void FillRect(int x0, int y0, int w, int h, Rgb c);
  void StrokeRect(int x0, int y0, int w, int h, Rgb c);
  void HLine(int x0, int x1, int y, Rgb c);
  void VLine(int x, int y0, int y1, Rgb c);
  // Anti-aliased line of the given width between sub-pixel positions (pixel centres at +0.5).
  void Line(double x0, double y0, double x1, double y1, Rgb c, double width = 1.5);
  void FillCircle(double cx, double cy, double r, Rgb c);

  // Restricts drawing to [x0, x0+w) x [y0, y0+h); ResetClip() restores the full canvas.
  void SetClip(int x0, int y0, int w, int h);
  void ResetClip();

  // Text in the bitmap font; `scale` enlarges each font pixel to scale x scale. (x, y) is the top-left
  // corner of the text box. Non-printable characters draw as '?'.
  void Text(int x, int y, std::string_view s, Rgb c, int scale = 1);
  // Text rotated 90 degrees counter-clockwise (reads bottom to top); (x, y) is the top-left of its box.
  void TextVertical(int x, int y, std::string_view s, Rgb c, int scale = 1);

  static int TextWidth(std::string_view s, int scale = 1);
  static int TextHeight(int scale = 1);

 private:
  RgbImage img_;
  int clip_x0_ = 0, clip_y0_ = 0, clip_x1_ = 0, clip_y1_ = 0;
};

}  // namespace subq
