#include "tools/lethe/unlearn_png.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/error.h"
#include "tools/lethe/png_canvas.h"

namespace lethe::cli {

std::string UnlearnBarsPng(const std::vector<BarModel>& models, const std::string& title) {
  LETHE_CHECK(models.size() <= 3);
  const Rgb colours[3] = {kGrey, kBlue, kOrange};
  Canvas canvas(kBarsWidth, kBarsHeight);
  canvas.Text((kBarsWidth - Canvas::TextWidth(title, 2)) / 2, 14, title, 2, kBlack);
  // Legend: a swatch and the name of each model.
  int lx = kPanelLeft;
  for (size_t j = 0; j < models.size(); ++j) {
    canvas.Fill(lx, 48, 14, 10, colours[j]);
    canvas.Text(lx + 20, 50, models[j].name, 1, kBlack);
    lx += 20 + Canvas::TextWidth(models[j].name, 1) + 30;
  }
  const char* names[4] = {"FORGET LOSS", "KEPT LOSS", "TEST LOSS", "MEMBERSHIP AUC"};
  for (int i = 0; i < 4; ++i) {
    const int x0 = kPanelLeft + i * kPanelStep;
    auto value = [&](const BarModel& m) {
      const double v[4] = {m.forget_loss, m.kept_loss, m.test_loss, m.membership_auc};
      return v[i];
    };
    // Losses start at 0 (no axis break, so bar lengths compare); the AUC is on its own
    // scale [0, 1], where 0.5 means the forget set cannot be told from the test set.
    double top = 0;
    bool any = false;
    for (const BarModel& m : models)
      if (std::isfinite(value(m))) top = std::max(top, value(m)), any = true;
    top = i == 3 ? 1.0 : (top > 0 ? 1.2 * top : 1.0);
    canvas.Text(x0 + (kPanelWidth - Canvas::TextWidth(names[i], 1)) / 2, 90, names[i], 1, kBlack);
    canvas.Line(x0, kBarBase, x0 + kPanelWidth, kBarBase, kBlack);
    if (i == 3) {
      const int y = kBarBase - kBarSpan / 2;
      // Darker than the original model's grey bar, so a bar's top never merges with it.
      const Rgb chance{90, 90, 90};
      canvas.Line(x0, y, x0 + kPanelWidth, y, chance, 4);
      canvas.Text(x0 + kPanelWidth + 2, y - 3, "0.5", 1, chance);  // in the gap to the right
    }
    if (!any) {
      const std::string note = "NOT MEASURED";
      canvas.Text(x0 + (kPanelWidth - Canvas::TextWidth(note, 1)) / 2, kBarBase - 40, note, 1, kBlack);
      continue;
    }
    for (size_t j = 0; j < models.size(); ++j) {
      const double v = value(models[j]);
      if (!std::isfinite(v)) continue;
      const int x = x0 + kBarInset + static_cast<int>(j) * (kBarWidth + kBarGap);
      const int h = static_cast<int>(std::lround(std::clamp(v / top, 0.0, 1.0) * kBarSpan));
      canvas.Fill(x, kBarBase - h, kBarWidth, h, colours[j]);
      char label[32];
      std::snprintf(label, sizeof label, "%.4f", v);
      canvas.Text(x + (kBarWidth - Canvas::TextWidth(label, 1)) / 2, kBarBase - h - 11, label, 1,
                  kBlack);
    }
  }
  canvas.Text(kPanelLeft, kBarBase + 24,
              "LOSSES: MEAN PER EXAMPLE, WITHOUT L2. MEMBERSHIP AUC: LOSS-THRESHOLD ATTACK, FORGET "
              "SET VS TEST SET",
              1, kBlack);
  canvas.Text(kPanelLeft, kBarBase + 36,
              "(0.5: INDISTINGUISHABLE, AS FOR A MODEL NEVER TRAINED ON THE FORGET SET)", 1, kBlack);
  return EncodePng(canvas);
}

}  // namespace lethe::cli
