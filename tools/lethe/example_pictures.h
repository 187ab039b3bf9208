// Pictures of examples as images (lethe influence --png, lethe self-influence --png): each
// example drawn from its features, captioned with its id, label and score, in a grid.
//
// Layout (pixels, origin top left; tests/python/test_pictures.py reads it). An image of
// shape [C, H, W] is upscaled by nearest neighbour by s = max(1, 96 / max(H, W)) (integer
// division: 8 × 8 digits become 96 × 96, 28 × 28 ones 84 × 84), each pixel value scaled by
// the image's own min..max to 0..255 (grey: high is white; C = 3: the three channels share
// the range). Tiles are kCellWidth = max(W·s, kMinCellWidth) wide; column j (counted over the
// whole row) of column group g starts at x = kMargin + j·(kCellWidth + kTileGap) + g·kGroupGap,
// row r at y = kHeaderHeight + r·(H·s + kCaptionHeight + kRowGap). The image sits at the
// tile's top, centred across it, inside a 2-pixel frame (black: a test example; green: a
// helpful training example; red: a harmful one; grey: self-influence); kCaptionLines lines
// of caption below it (cut to the tile's width). The canvas is as wide as the grid or its
// widest header line, whichever is wider, plus kMargin each side.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/architecture.h"
#include "io/dataset.h"

namespace lethe::cli {

constexpr int kMinCellWidth = 96, kTileGap = 12, kGroupGap = 24, kMargin = 20, kHeaderHeight = 84,
              kCaptionHeight = 38, kRowGap = 14, kCaptionLines = 3, kFrame = 2;

// The most tiles a row or column of a picture may have (--png-top, --png-tests), and the
// largest image side drawn: beyond them a picture is no longer something to look at.
constexpr int64_t kMaxPngTiles = 64, kMaxImageSide = 1024;

struct ImageShape {
  int64_t channels = 1, height = 0, width = 0;
  int64_t scale() const;  // the nearest-neighbour factor s above
};

// One example's image shape: the model's input [C, H, W] with C = 1 or 3 (or [H, W]), the
// data's trailing shape when the model flattens it, else a square d = s² as s × s grey.
// Throws lethe::Error "--png needs image data: PATH ..." for anything else (tabular
// features, token ids) and for images wider or taller than kMaxImageSide, before any work
// is done.
ImageShape ImageShapeOf(const Architecture& arch, const io::Dataset& data);

// A training example the picture shows, by row of its dataset.
struct Shown {
  int64_t row;
  double score;
};

// One test example's row of the influence picture: the test image, then its most helpful
// and most harmful training examples.
struct InfluenceRow {
  int64_t test_row;
  double predicted;  // the model's class (or, regression, its output)
  std::vector<Shown> helpful, harmful;
};

// lethe influence --png: the PNG file's bytes. regression: predicted is an output value
// (mse), not a class.
std::string InfluencePng(const io::Dataset& train, const io::Dataset& test, const ImageShape& shape,
                         const std::vector<InfluenceRow>& rows, bool regression);

// lethe self-influence --png: the examples of highest self-influence, kSelfColumns a row.
constexpr int kSelfColumns = 8;
std::string SelfInfluencePng(const io::Dataset& train, const ImageShape& shape,
                             const std::vector<Shown>& top);

}  // namespace lethe::cli
