// A scatter plot as a PNG file, drawn on tools/lethe/png_canvas.h's canvas.
//
// Layout (pixels, origin top left; tests/python/test_validate_influence.py reads it):
// canvas kScatterWidth × kScatterHeight, white; the plot area's frame is black, at
// x ∈ [kPlotLeft, kPlotRight], y ∈ [kPlotTop, kPlotBottom]. Both axes share one range (the
// data's, padded by 5%), so the y = x line (grey) is the frame's diagonal from bottom left
// to top right; points are blue (31, 119, 180) discs of radius 3; the title is centred above.
#pragma once

#include <string>
#include <vector>

namespace lethe::cli {

constexpr int kScatterWidth = 720, kScatterHeight = 560;
constexpr int kPlotLeft = 120, kPlotRight = 690, kPlotTop = 50, kPlotBottom = 470;

// The PNG file's bytes. Non-finite pairs are left out.
std::string ScatterPng(const std::vector<double>& x, const std::vector<double>& y,
                       const std::string& title, const std::string& x_label,
                       const std::string& y_label);

}  // namespace lethe::cli
