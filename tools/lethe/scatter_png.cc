#include "tools/lethe/scatter_png.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tools/lethe/png_canvas.h"

namespace lethe::cli {
namespace {

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
