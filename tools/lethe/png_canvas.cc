#include "tools/lethe/png_canvas.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>

#include "common/error.h"
#include "io/atomic_file.h"

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
      {'>', ".#.....#.....#.....#...#...#...#..."}, {'<', "...#...#...#...#.....#.....#.....#."},
      {'*', ".......#..#.#.#.###.#.#.#..#......."}, {'%', "##...##..#...#...#...#...#..##...##"},
      {'\'', "..#....#...#......................."},
  };
  return font;
}

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

}  // namespace

Canvas::Canvas(int w, int h) : w_(w), h_(h), px_(static_cast<size_t>(w) * h * 3, 255) {}

void Canvas::Set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

Rgb Canvas::Get(int x, int y) const {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return kWhite;
  const uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
  return {p[0], p[1], p[2]};
}

void Canvas::Line(int x0, int y0, int x1, int y1, Rgb c, int dash) {
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

void Canvas::Fill(int x, int y, int w, int h, Rgb c) {
  for (int v = y; v < y + h; ++v)
    for (int u = x; u < x + w; ++u) Set(u, v, c);
}

void Canvas::Frame(int x, int y, int w, int h, int t, Rgb c) {
  Fill(x - t, y - t, w + 2 * t, t, c);
  Fill(x - t, y + h, w + 2 * t, t, c);
  Fill(x - t, y, t, h, c);
  Fill(x + w, y, t, h, c);
}

void Canvas::Disc(int cx, int cy, int radius, Rgb c) {
  for (int y = -radius; y <= radius; ++y)
    for (int x = -radius; x <= radius; ++x)
      if (x * x + y * y <= radius * radius + radius) Set(cx + x, cy + y, c);
}

void Canvas::Text(int x, int y, const std::string& text, int s, Rgb c, bool vertical) {
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

int Canvas::TextWidth(const std::string& text, int s) {
  return static_cast<int>(text.size()) * 6 * s - s;
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
    Fail("picture: zlib could not compress the image");
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

void CheckPngOutput(const std::string& png, const std::vector<std::string>& inputs,
                    const std::vector<std::string>& outputs) {
  if (!png.ends_with(".png") && !io::IsExistingStream(png)) Fail("--png ", png, ": must end in .png");
  io::CheckOutputIsNotAnInput(png, inputs);
  for (const std::string& out : outputs)
    if (png == out) Fail("--png ", png, ": names the same file as another output");
  io::CheckOutputCanBeWritten(png);
}

}  // namespace lethe::cli
