// lethe unlearn --verify --png: original, patched and retrained side by side, as grouped
// bars with their values printed — forget loss, kept loss, test loss, membership AUC.
//
// Layout (pixels, origin top left; tests/python/test_pictures.py reads it): canvas
// kBarsWidth × kBarsHeight, white. Panel i (0 forget loss, 1 kept loss, 2 test loss,
// 3 membership AUC) starts at x = kPanelLeft + i·kPanelStep; its bar j (the models in the
// order given) covers x ∈ [x + kBarInset + j·(kBarWidth + kBarGap), … + kBarWidth) and rises
// from the baseline y = kBarBase (exclusive) by round(value / top · kBarSpan) pixels, where
// top is 1 for the AUC (with a dashed line (90, 90, 90) at 0.5, chance) and 1.2 × the panel's largest
// value for a loss. Bar colours: grey (150), blue (31, 119, 180), orange (255, 127, 14). A
// value that was not measured (no --test: test loss and AUC) has no bar, and its panel says so.
#pragma once

#include <string>
#include <vector>

namespace lethe::cli {

constexpr int kBarsWidth = 800, kBarsHeight = 440, kPanelLeft = 40, kPanelStep = 185,
              kPanelWidth = 165, kBarInset = 12, kBarWidth = 40, kBarGap = 10, kBarBase = 380,
              kBarSpan = 240;

struct BarModel {
  std::string name;
  double forget_loss, kept_loss, test_loss, membership_auc;  // NaN: not measured
};

// The PNG file's bytes for up to three models.
std::string UnlearnBarsPng(const std::vector<BarModel>& models, const std::string& title);

}  // namespace lethe::cli
