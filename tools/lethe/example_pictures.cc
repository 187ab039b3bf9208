#include "tools/lethe/example_pictures.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "common/error.h"
#include "tools/lethe/png_canvas.h"

namespace lethe::cli {
namespace {

// One captioned image of the grid.
struct Tile {
  const double* values;              // channels × height × width, channel first
  std::vector<std::string> caption;  // at most kCaptionLines lines
  Rgb frame;
};

// Tiles in rows; a row's tiles fill the groups' columns left to right, and a row may stop
// short. A group's header is written above its first column.
struct Grid {
  std::string title;
  std::vector<std::string> legend;  // at most two lines
  std::vector<std::pair<std::string, int>> groups;  // header, columns
  std::vector<std::vector<Tile>> rows;
};

std::string Format(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// Nearest-neighbour upscale, each value mapped through the image's own min..max (a constant
// image is mid grey): pictures compare shapes, not absolute intensities.
void DrawImage(Canvas& canvas, int x0, int y0, const double* v, const ImageShape& shape) {
  const int64_t plane = shape.height * shape.width, s = shape.scale();
  const auto range = std::minmax_element(v, v + shape.channels * plane);
  const double lo = *range.first, hi = *range.second;
  auto level = [&](double x) {
    const double t = hi > lo ? (x - lo) / (hi - lo) : 0.5;
    return static_cast<uint8_t>(std::lround(255 * t));
  };
  for (int64_t y = 0; y < shape.height; ++y)
    for (int64_t x = 0; x < shape.width; ++x) {
      const int64_t at = y * shape.width + x;
      const uint8_t a = level(v[at]);
      const Rgb c = shape.channels == 3 ? Rgb{a, level(v[plane + at]), level(v[2 * plane + at])}
                                        : Rgb{a, a, a};
      canvas.Fill(static_cast<int>(x0 + x * s), static_cast<int>(y0 + y * s), static_cast<int>(s),
                  static_cast<int>(s), c);
    }
}

std::string DrawGrid(const Grid& grid, const ImageShape& shape) {
  const int s = static_cast<int>(shape.scale());
  const int iw = static_cast<int>(shape.width) * s, ih = static_cast<int>(shape.height) * s;
  const int cw = std::max(iw, kMinCellWidth);
  int columns = 0;
  for (const auto& g : grid.groups) columns += g.second;
  const int groups = static_cast<int>(grid.groups.size()), rows = static_cast<int>(grid.rows.size());
  auto column_x = [&](int j, int g) { return kMargin + j * (cw + kTileGap) + g * kGroupGap; };
  auto row_y = [&](int r) { return kHeaderHeight + r * (ih + kCaptionHeight + kRowGap); };
  int width = column_x(columns - 1, groups - 1) + cw + kMargin;
  width = std::max(width, Canvas::TextWidth(grid.title, 2) + 2 * kMargin);
  for (const std::string& line : grid.legend)
    width = std::max(width, Canvas::TextWidth(line, 1) + 2 * kMargin);
  const int height = row_y(rows) - kRowGap + kMargin;
  Canvas canvas(width, height);
  canvas.Text(kMargin, 12, grid.title, 2, kBlack);
  for (size_t l = 0; l < grid.legend.size(); ++l)
    canvas.Text(kMargin, 38 + 12 * static_cast<int>(l), grid.legend[l], 1, kBlack);
  for (int g = 0, first = 0; g < groups; first += grid.groups[g].second, ++g)
    canvas.Text(column_x(first, g), kHeaderHeight - 18, grid.groups[g].first, 1, kBlack);
  const size_t max_chars = static_cast<size_t>((cw + 1) / 6);
  for (int r = 0; r < rows; ++r) {
    int j = 0, g = 0, left_in_group = grid.groups[0].second;
    for (const Tile& tile : grid.rows[r]) {
      while (left_in_group == 0) left_in_group = grid.groups[++g].second;
      const int x = column_x(j, g), y = row_y(r), ix = x + (cw - iw) / 2;
      canvas.Frame(ix, y, iw, ih, kFrame, tile.frame);
      DrawImage(canvas, ix, y, tile.values, shape);
      // The score line (the third) in the frame's colour, so that sign and side agree at a glance.
      for (size_t l = 0; l < tile.caption.size(); ++l)
        canvas.Text(x, y + ih + kFrame + 6 + 10 * static_cast<int>(l),
                    tile.caption[l].substr(0, max_chars), 1,
                    l == 2 && tile.frame != kGrey ? tile.frame : kBlack);
      ++j, --left_in_group;
    }
  }
  return EncodePng(canvas);
}

const double* Features(const io::Dataset& data, int64_t row) { return data.X.data() + row * data.d; }
double Label(const io::Dataset& data, int64_t row) { return data.y[row * data.target_width]; }

Tile TrainTile(const io::Dataset& train, const Shown& e, Rgb frame) {
  return {Features(train, e.row),
          {"ID " + std::to_string(train.ids[e.row]), "LABEL " + Format("%g", Label(train, e.row)),
           Format("%+.2E", e.score)},
          frame};
}

}  // namespace

int64_t ImageShape::scale() const { return std::max<int64_t>(1, 96 / std::max(height, width)); }

ImageShape ImageShapeOf(const Architecture& arch, const io::Dataset& data) {
  const Shape& in = arch.input_shape;
  auto fail = [&](const std::string& why) {
    Fail("--png needs image data: ", data.path, ": ", why,
         "; an image is [C, H, W] with C = 1 or 3 (the spec's \"input\"), or a square number of "
         "features (64 = 8 × 8)");
  };
  if (data.integer_features) fail("its features are token ids");
  auto image = [&](const Shape& shape) -> std::optional<ImageShape> {
    if (shape.size() == 3 && (shape[0] == 1 || shape[0] == 3) && shape[1] >= 2 && shape[2] >= 2)
      return ImageShape{shape[0], shape[1], shape[2]};
    if (shape.size() == 2 && shape[0] >= 2 && shape[1] >= 2) return ImageShape{1, shape[0], shape[1]};
    return std::nullopt;
  };
  std::optional<ImageShape> shape = image(in);
  // A model that flattens its input (an MLP) over data stored as [n, C, H, W] or [n, H, W].
  if (!shape) shape = image(data.example_shape);
  if (!shape && in.size() == 1) {
    const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(in[0]))));
    if (side >= 2 && side * side == in[0]) shape = ImageShape{1, side, side};
  }
  if (!shape) fail("one example is " + ShapeText(in) + ", not an image");
  if (std::max(shape->height, shape->width) > kMaxImageSide)
    Fail("--png: ", data.path, ": images of ", shape->height, " × ", shape->width,
         " are too large to draw (at most ", kMaxImageSide, " pixels a side)");
  return *shape;
}

std::string InfluencePng(const io::Dataset& train, const io::Dataset& test, const ImageShape& shape,
                         const std::vector<InfluenceRow>& rows, bool regression) {
  Grid grid;
  grid.title = "INFLUENCE: WHICH TRAINING EXAMPLES MADE THE MODEL SAY THIS";
  // The sign convention of docs/influence.md, said where the scores are read.
  grid.legend = {"HELPFUL (GREEN): SCORE > 0, REMOVING IT FROM TRAINING WOULD RAISE THE TEST LOSS",
                 "HARMFUL (RED): SCORE < 0, REMOVING IT WOULD LOWER THE TEST LOSS"};
  int top = 0;
  for (const InfluenceRow& r : rows) top = std::max<int>(top, static_cast<int>(r.helpful.size()));
  grid.groups = {{"TEST EXAMPLE", 1}, {"MOST HELPFUL", top}, {"MOST HARMFUL", top}};
  for (const InfluenceRow& r : rows) {
    std::vector<Tile> tiles = {
        {Features(test, r.test_row),
         {"TEST ID " + std::to_string(test.ids[r.test_row]),
          "LABEL " + Format("%g", Label(test, r.test_row)),
          "PREDICTED " + Format(regression ? "%.3g" : "%g", r.predicted)},
         kBlack}};
    // Every row shows min(K, n) of each (one training set), so the groups line up.
    for (const Shown& e : r.helpful) tiles.push_back(TrainTile(train, e, kGreen));
    for (const Shown& e : r.harmful) tiles.push_back(TrainTile(train, e, kRed));
    grid.rows.push_back(std::move(tiles));
  }
  return DrawGrid(grid, shape);
}

std::string SelfInfluencePng(const io::Dataset& train, const ImageShape& shape,
                             const std::vector<Shown>& top) {
  Grid grid;
  grid.title = "HIGHEST SELF-INFLUENCE";
  grid.legend = {"SCORE: PREDICTED RISE OF THE EXAMPLE'S OWN LOSS WHEN IT IS LEFT OUT",
                 "LARGE FOR MISLABELED OR MEMORISED EXAMPLES"};
  const int columns = std::max(1, std::min(kSelfColumns, static_cast<int>(top.size())));
  grid.groups = {{"", columns}};
  for (size_t k = 0; k < top.size(); ++k) {
    if (k % columns == 0) grid.rows.emplace_back();
    grid.rows.back().push_back(TrainTile(train, top[k], kGrey));
  }
  if (grid.rows.empty()) grid.rows.emplace_back();
  return DrawGrid(grid, shape);
}

}  // namespace lethe::cli
