#include "tools/lethe/scatter_png.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>

#include "common/error.h"

namespace lethe::cli {
namespace {

// 5 × 7 glyphs, one string of 7 rows × 5 columns ('#' = ink) per character.
const std::map<char, const char*>& Font() {
  static const std::map<char, const char*> font = {
      {' ', "..................................."}, {'0', ".###.#...##..###.#.###..##...#.###."},
      {'1', "..#...##....#....#....#....#...###."}, {'2', ".###.#...#....#...#...#...#...#####"},
      {'3', "#####...#...#.....#.....##...#.###."}, {'4', "...#...##..#.#.#..#.#####...#....#."},
      {'5', "######....####.....#....##...#.###."}, {'6', "..##..#...#....####.#...##...#.###."},
      {'7', "#####....#...#...#...#....#....#..."}, {'8', ".###.#...##...#.###.#...##...#.###."},
      {'9', ".###.#...##...#.####....#...#..##.."}, {'A', ".###.#...##...#######...##...##...#"},
      {'B', "####.#...##...#####.#...##...#####."}, {'C', ".###.#...##....#....#....#...#.###."},
      {'D', "###..#..#.#...##...##...##..#.###.."}, {'E', "######....#....####.#....#....#####"},
      {'F', "######....#....####.#....#....#...."}, {'G', ".###.#...##....#.####...##...#.####"},
      {'H', "#...##...##...#######...##...##...#"}, {'I', ".###...#....#....#....#....#...###."},
      {'J', "..###...#....#....#....#.#..#..##.."}, {'K', "#...##..#.#.#..##...#.#..#..#.#...#"},
      {'L', "#....#....#....#....#....#....#####"}, {'M', "#...###.###.#.##.#.##...##...##...#"},
      {'N', "#...##...###..##.#.##..###...##...#"}, {'O', ".###.#...##...##...##...##...#.###."},
      {'P', "####.#...##...#####.#....#....#...."}, {'Q', ".###.#...##...##...##.#.##..#..##.#"},
      {'R', "####.#...##...#####.#.#..#..#.#...#"}, {'S', ".#####....#.....###.....#....#####."},
      {'T', "#####..#....#....#....#....#....#.."}, {'U', "#...##...##...##...##...##...#.###."},
      {'V', "#...##...##...##...##...#.#.#...#.."}, {'W', "#...##...##...##.#.##.#.##.#.#.#.#."},
      {'X', "#...##...#.#.#...#...#.#.#...##...#"}, {'Y', "#...##...#.#.#...#....#....#....#.."},
      {'Z', "#####....#...#...#...#...#....#####"}, {'.', "..........................##...##.."},
      {',', ".....................##....#...#..."}, {'-', "...............#####..............."},
      {'+', ".......#....#..#####..#....#......."}, {'=', "..........#####.....#####.........."},
      {'(', "...#...#...#....#....#.....#.....#."}, {')', ".#.....#.....#....#....#...#...#..."},
      {':', "......##...##........##...##......."}, {'/', ".........#...#...#...#...#........."},
      {'_', "..............................#####"}, {'?', ".###.#...#....#...#...#.........#.."},
  };
  return font;
}

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kBlack{0, 0, 0}, kGrey{150, 150, 150}, kLight{225, 225, 225},
    kBlue{31, 119, 180};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(static_cast<size_t>(w) * h * 3, 255) {}
  void Set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  // Bresenham; `dash` > 0 draws every other run of that many pixels.
  void Line(int x0, int y0, int x1, int y1, Rgb c, int dash = 0) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy, k = 0;
    for (;;) {
      if (dash == 0 || (k++ / dash) % 2 == 0) Set(x0, y0, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  void Disc(int cx, int cy, int radius, Rgb c) {
    for (int y = -radius; y <= radius; ++y)
      for (int x = -radius; x <= radius; ++x)
        if (x * x + y * y <= radius * radius + radius) Set(cx + x, cy + y, c);
  }
  // Text at scale `s` (each font pixel an s × s block), 6s pixels per character. Horizontal
  // from its top-left corner (x, y); vertical (reading bottom to top) from its bottom-left.
  void Text(int x, int y, const std::string& text, int s, Rgb c, bool vertical = false) {
    int k = 0;
    for (char ch : text) {
      const auto it = Font().find(static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
      const char* g = it == Font().end() ? Font().at('?') : it->second;
      for (int row = 0; row < 7; ++row)
        for (int col = 0; col < 5; ++col) {
          if (g[row * 5 + col] != '#') continue;
          for (int a = 0; a < s; ++a)
            for (int b = 0; b < s; ++b) {
              const int u = (6 * k + col) * s + a, v = row * s + b;  // along, down the glyph
              vertical ? Set(x + v, y - u, c) : Set(x + u, y + v, c);
            }
        }
      ++k;
    }
  }
  static int TextWidth(const std::string& text, int s) {
    return static_cast<int>(text.size()) * 6 * s - s;
  }
  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<uint8_t>& pixels() const { return px_; }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// A PNG chunk: length, type, data, CRC-32 of type and data.
void Chunk(std::string& out, const char* type, const std::string& data) {
  PutU32(out, static_cast<uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  PutU32(out, static_cast<uint32_t>(
                  crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

std::string EncodePng(const Canvas& canvas) {
  const int w = canvas.width(), h = canvas.height();
  // Scanlines, each preceded by its filter type (0: none).
  std::string raw;
  raw.reserve(static_cast<size_t>(h) * (1 + 3 * w));
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(canvas.pixels().data()) + static_cast<size_t>(y) * w * 3,
               static_cast<size_t>(w) * 3);
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string deflated(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(deflated.data()), &size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                Z_BEST_COMPRESSION) != Z_OK)
    Fail("scatter plot: zlib could not compress the image");
  deflated.resize(size);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string header;
  PutU32(header, static_cast<uint32_t>(w));
  PutU32(header, static_cast<uint32_t>(h));
  header += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, no filter, no interlace
  Chunk(png, "IHDR", header);
  Chunk(png, "IDAT", deflated);
  Chunk(png, "IEND", "");
  return png;
}

std::string TickLabel(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2E", v);
  return buf;
}

}  // namespace

std::string ScatterPng(const std::vector<double>& x, const std::vector<double>& y,
                       const std::string& title, const std::string& x_label,
                       const std::string& y_label) {
  Canvas canvas(kScatterWidth, kScatterHeight);
  // One range for both axes, so that y = x is the diagonal.
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    if (std::isfinite(x[i]) && std::isfinite(y[i]))
      lo = std::min({lo, x[i], y[i]}), hi = std::max({hi, x[i], y[i]});
  if (!(lo <= hi)) lo = -1, hi = 1;  // no points
  if (lo == hi) {
    const double half = std::max(std::abs(lo) * 0.1, 1e-300);
    lo -= half, hi += half;
  }
  const double pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
  const double span = hi - lo;
  auto px = [&](double v) {
    return kPlotLeft + static_cast<int>(std::lround((v - lo) / span * (kPlotRight - kPlotLeft)));
  };
  auto py = [&](double v) {
    return kPlotBottom - static_cast<int>(std::lround((v - lo) / span * (kPlotBottom - kPlotTop)));
  };
  // Zero lines (light, dashed) where 0 is inside the range, then y = x, then the frame.
  if (lo < 0 && hi > 0) {
    canvas.Line(px(0), kPlotTop, px(0), kPlotBottom, kLight, 4);
    canvas.Line(kPlotLeft, py(0), kPlotRight, py(0), kLight, 4);
  }
  canvas.Line(kPlotLeft, kPlotBottom, kPlotRight, kPlotTop, kGrey);
  canvas.Line(kPlotLeft, kPlotTop, kPlotRight, kPlotTop, kBlack);
  canvas.Line(kPlotLeft, kPlotBottom, kPlotRight, kPlotBottom, kBlack);
  canvas.Line(kPlotLeft, kPlotTop, kPlotLeft, kPlotBottom, kBlack);
  canvas.Line(kPlotRight, kPlotTop, kPlotRight, kPlotBottom, kBlack);
  // Ticks and labels at both ends and the middle of the range.
  for (double t : {lo + pad, lo + span / 2, hi - pad}) {
    const std::string label = TickLabel(t);
    canvas.Line(px(t), kPlotBottom, px(t), kPlotBottom + 6, kBlack);
    canvas.Text(px(t) - Canvas::TextWidth(label, 1) / 2, kPlotBottom + 10, label, 1, kBlack);
    canvas.Line(kPlotLeft - 6, py(t), kPlotLeft, py(t), kBlack);
    canvas.Text(kPlotLeft - 10 - Canvas::TextWidth(label, 1), py(t) - 3, label, 1, kBlack);
  }
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    if (std::isfinite(x[i]) && std::isfinite(y[i])) canvas.Disc(px(x[i]), py(y[i]), 3, kBlue);
  canvas.Text((kScatterWidth - Canvas::TextWidth(title, 2)) / 2, 14, title, 2, kBlack);
  canvas.Text((kPlotLeft + kPlotRight - Canvas::TextWidth(x_label, 2)) / 2, kPlotBottom + 40,
              x_label, 2, kBlack);
  canvas.Text(14, (kPlotTop + kPlotBottom + Canvas::TextWidth(y_label, 2)) / 2, y_label, 2, kBlack,
              /*vertical=*/true);
  return EncodePng(canvas);
}

}  // namespace lethe::cli
