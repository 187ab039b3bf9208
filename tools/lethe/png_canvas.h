// An RGB canvas that draws lines, rectangles, discs, text and images, and writes itself as a
// PNG file: what lethe's pictures (scatter_png, example_pictures, unlearn_png) share. The
// font is a 5 × 7 bitmap of our own (upper case, digits, a little punctuation; lower case is
// drawn as upper case) and the PNG container is written with zlib (deflate for IDAT, crc32
// for the chunks), so pictures cost no dependency beyond the zlib the .npz reader needs.
//
// Coordinates are pixels, origin top left; drawing outside the canvas is clipped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lethe::cli {

struct Rgb {
  uint8_t r, g, b;
  bool operator==(const Rgb&) const = default;
};
constexpr Rgb kBlack{0, 0, 0}, kWhite{255, 255, 255}, kGrey{150, 150, 150},
    kLight{225, 225, 225};
// matplotlib's first colours ("tab10"), so the CLI's pictures and lethe.plot's agree.
constexpr Rgb kBlue{31, 119, 180}, kOrange{255, 127, 14}, kGreen{44, 160, 44},
    kRed{214, 39, 40};

class Canvas {
 public:
  Canvas(int w, int h);  // white
  void Set(int x, int y, Rgb c);
  Rgb Get(int x, int y) const;
  // Bresenham; `dash` > 0 draws every other run of that many pixels.
  void Line(int x0, int y0, int x1, int y1, Rgb c, int dash = 0);
  void Fill(int x, int y, int w, int h, Rgb c);           // the rectangle [x, x+w) × [y, y+h)
  void Frame(int x, int y, int w, int h, int t, Rgb c);   // its border, t pixels thick, outside it
  void Disc(int cx, int cy, int radius, Rgb c);
  // Text at scale `s` (each font pixel an s × s block), 6s pixels per character. Horizontal
  // from its top-left corner (x, y); vertical (reading bottom to top) from its bottom-left.
  void Text(int x, int y, const std::string& text, int s, Rgb c, bool vertical = false);
  static int TextWidth(const std::string& text, int s);
  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<uint8_t>& pixels() const { return px_; }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

// The PNG file's bytes: 8-bit RGB, filter 0 on every row, no interlace.
std::string EncodePng(const Canvas& canvas);

// A command's --png FILE, checked before any work: it ends in .png (or is an existing stream
// such as /dev/null), is none of `inputs` and none of `outputs`, and can be written. Throws
// lethe::Error naming the option and the file.
void CheckPngOutput(const std::string& png, const std::vector<std::string>& inputs,
                    const std::vector<std::string>& outputs);

}  // namespace lethe::cli
