#include "util/canvas.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <memory>

#include "util/font.h"

namespace subq {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { if (f) std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

// libpng reports errors through longjmp; these wrappers keep only trivially destructible locals
// between setjmp and the libpng calls.
bool WriteRows(FILE* f, int w, int h, png_bytep* rows, std::string* err) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) { *err = "png_create_write_struct failed"; return false; }
  png_infop info = png_create_info_struct(png);
  if (!info) { png_destroy_write_struct(&png, nullptr); *err = "png_create_info_struct failed"; return false; }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    *err = "libpng write error";
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

bool ReadRows(FILE* f, RgbImage* out, std::string* err) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) { *err = "png_create_read_struct failed"; return false; }
  png_infop info = png_create_info_struct(png);
  if (!info) { png_destroy_read_struct(&png, nullptr, nullptr); *err = "png_create_info_struct failed"; return false; }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    *err = "libpng read error (not a PNG or truncated)";
    return false;
  }
  png_init_io(png, f);
  png_read_info(png, info);
  png_set_expand(png);            // palette / low-bit grey / tRNS -> 8-bit
  png_set_strip_16(png);          // 16-bit -> 8-bit
  png_set_strip_alpha(png);       // drop alpha
  png_set_gray_to_rgb(png);       // grey -> RGB
  png_read_update_info(png, info);
  const int w = static_cast<int>(png_get_image_width(png, info));
  const int h = static_cast<int>(png_get_image_height(png, info));
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * 3) {
    png_destroy_read_struct(&png, &info, nullptr);
    *err = "unexpected row size after conversion to RGB";
    return false;
  }
  out->width = w;
  out->height = h;
  out->rgb.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) png_read_row(png, &out->rgb[static_cast<size_t>(y) * w * 3], nullptr);
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

const uint8_t* Glyph(char ch) {
  int code = static_cast<unsigned char>(ch);
  if (code < font::kFirst || code > font::kLast) code = '?';
  return font::kGlyphs[code - font::kFirst];
}

}  // namespace

Status WritePngRgb(const RgbImage& img, const std::string& path) {
  if (img.width <= 0 || img.height <= 0 || img.rgb.size() != static_cast<size_t>(img.width) * img.height * 3)
    return Errorf("WritePngRgb({}): bad image {}x{} with {} bytes", path, img.width, img.height, img.rgb.size());
  FilePtr f(std::fopen(path.c_str(), "wb"));
  if (!f) return Errorf("WritePngRgb: cannot open '{}' for writing", path);
  std::vector<png_bytep> rows(img.height);
  for (int y = 0; y < img.height; ++y)
    rows[y] = const_cast<png_bytep>(&img.rgb[static_cast<size_t>(y) * img.width * 3]);
  std::string err;
  if (!WriteRows(f.get(), img.width, img.height, rows.data(), &err)) return Errorf("WritePngRgb({}): {}", path, err);
  if (std::fclose(f.release()) != 0) return Errorf("WritePngRgb({}): error closing file", path);
  return Status::Ok();
}

Result<RgbImage> ReadPngRgb(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) return Errorf("ReadPngRgb: cannot open '{}'", path);
  png_byte sig[8];
  if (std::fread(sig, 1, 8, f.get()) != 8 || png_sig_cmp(sig, 0, 8) != 0)
    return Errorf("ReadPngRgb({}): not a PNG file", path);
  std::rewind(f.get());
  RgbImage img;
  std::string err;
  if (!ReadRows(f.get(), &img, &err)) return Errorf("ReadPngRgb({}): {}", path, err);
  return img;
}

Canvas::Canvas(int width, int height, Rgb background) {
  img_.width = std::max(1, width);
  img_.height = std::max(1, height);
  img_.rgb.resize(static_cast<size_t>(img_.width) * img_.height * 3);
  for (size_t i = 0; i < img_.rgb.size(); i += 3) std::copy(background.begin(), background.end(), &img_.rgb[i]);
  ResetClip();
}

void Canvas::SetClip(int x0, int y0, int w, int h) {
  clip_x0_ = std::max(0, x0);
  clip_y0_ = std::max(0, y0);
  clip_x1_ = std::min(img_.width, x0 + w);
  clip_y1_ = std::min(img_.height, y0 + h);
}

void Canvas::ResetClip() { SetClip(0, 0, img_.width, img_.height); }

void Canvas::Set(int x, int y, Rgb c) {
  if (x < clip_x0_ || y < clip_y0_ || x >= clip_x1_ || y >= clip_y1_) return;
  uint8_t* p = &img_.rgb[(static_cast<size_t>(y) * img_.width + x) * 3];
  p[0] = c[0], p[1] = c[1], p[2] = c[2];
}

void Canvas::Blend(int x, int y, Rgb c, double alpha) {
  if (x < clip_x0_ || y < clip_y0_ || x >= clip_x1_ || y >= clip_y1_ || alpha <= 0) return;
  alpha = std::min(alpha, 1.0);
  uint8_t* p = &img_.rgb[(static_cast<size_t>(y) * img_.width + x) * 3];
  for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::lround(p[k] + (c[k] - p[k]) * alpha));
}

void Canvas::FillRect(int x0, int y0, int w, int h, Rgb c) {
  for (int y = y0; y < y0 + h; ++y)
    for (int x = x0; x < x0 + w; ++x) Set(x, y, c);
}

void Canvas::StrokeRect(int x0, int y0, int w, int h, Rgb c) {
  HLine(x0, x0 + w - 1, y0, c);
  HLine(x0, x0 + w - 1, y0 + h - 1, c);
  VLine(x0, y0, y0 + h - 1, c);
  VLine(x0 + w - 1, y0, y0 + h - 1, c);
}

void Canvas::HLine(int x0, int x1, int y, Rgb c) {
  for (int x = std::min(x0, x1); x <= std::max(x0, x1); ++x) Set(x, y, c);
}

void Canvas::VLine(int x, int y0, int y1, Rgb c) {
  for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y) Set(x, y, c);
}

// Coverage of each pixel from its centre's distance to the segment (a soft-edged capsule).
void Canvas::Line(double x0, double y0, double x1, double y1, Rgb c, double width) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  const double half = width / 2;
  const int bx0 = std::max(clip_x0_, static_cast<int>(std::floor(std::min(x0, x1) - half - 1)));
  const int bx1 = std::min(clip_x1_ - 1, static_cast<int>(std::ceil(std::max(x0, x1) + half + 1)));
  const int by0 = std::max(clip_y0_, static_cast<int>(std::floor(std::min(y0, y1) - half - 1)));
  const int by1 = std::min(clip_y1_ - 1, static_cast<int>(std::ceil(std::max(y0, y1) + half + 1)));
  const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  for (int y = by0; y <= by1; ++y) {
    for (int x = bx0; x <= bx1; ++x) {
      const double px = x + 0.5 - x0, py = y + 0.5 - y0;
      const double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
      const double ex = px - t * dx, ey = py - t * dy;
      const double cover = half + 0.5 - std::sqrt(ex * ex + ey * ey);
      if (cover > 0) Blend(x, y, c, cover);
    }
  }
}

void Canvas::FillCircle(double cx, double cy, double r, Rgb c) { Line(cx, cy, cx, cy, c, 2 * r); }

int Canvas::TextWidth(std::string_view s, int scale) { return static_cast<int>(s.size()) * font::kGlyphW * scale; }
int Canvas::TextHeight(int scale) { return font::kGlyphH * scale; }

void Canvas::Text(int x, int y, std::string_view s, Rgb c, int scale) {
  for (size_t i = 0; i < s.size(); ++i) {
    const uint8_t* g = Glyph(s[i]);
    const int ox = x + static_cast<int>(i) * font::kGlyphW * scale;
    for (int gy = 0; gy < font::kGlyphH; ++gy)
      for (int gx = 0; gx < font::kGlyphW; ++gx)
        if (g[gy] & (0x80 >> gx)) FillRect(ox + gx * scale, y + gy * scale, scale, scale, c);
  }
}

void Canvas::TextVertical(int x, int y, std::string_view s, Rgb c, int scale) {
  // The box is kGlyphH*scale wide and TextWidth(s) tall; glyph pixel (gx, gy) of character i lands at
  // column gy and row (total - 1 - (i*W + gx)) from the top.
  const int total = TextWidth(s, 1);
  for (size_t i = 0; i < s.size(); ++i) {
    const uint8_t* g = Glyph(s[i]);
    for (int gy = 0; gy < font::kGlyphH; ++gy)
      for (int gx = 0; gx < font::kGlyphW; ++gx)
        if (g[gy] & (0x80 >> gx)) {
          const int row = total - 1 - (static_cast<int>(i) * font::kGlyphW + gx);
          FillRect(x + gy * scale, y + row * scale, scale, scale, c);
        }
  }
}

}  // namespace subq
