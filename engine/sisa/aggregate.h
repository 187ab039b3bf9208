// How a SISA ensemble predicts: its S constituents' outputs combined into one label.
//
//   vote: each constituent's own label (cross_entropy: the first largest output, as
//         torch.argmax; logistic: 1 when f > 0), then the label with the most votes;
//         a tie goes to the lowest label.
//   mean: the mean over constituents of the predicted probabilities (softmax of the
//         outputs; logistic: [1 − σ(f), σ(f)]), then the label with the largest mean
//         probability; a tie goes to the lowest label (logistic: 1 only when p̄ > ½).
// Regression (mse) ensembles are not supported yet.
#pragma once

#include <cstdint>
#include <vector>

#include "common/ops.h"
#include "engine/sisa/manifest.h"

namespace lethe::sisa {

// The number of labels a model with output width `width` predicts among.
int64_t NumLabels(LossKind loss, int64_t width);
// One constituent's label for one output row f (width values).
int64_t ConstituentLabel(LossKind loss, const double* f, int64_t width);
// Its probabilities (NumLabels values) into p.
void Probabilities(LossKind loss, const double* f, int64_t width, double* p);

struct EnsemblePrediction {
  std::vector<int64_t> label;  // n
  // mean only: n × NumLabels mean probabilities (empty for vote)
  std::vector<double> probability;
};

// outputs[c] is constituent c's n × width outputs, row-major.
EnsemblePrediction Predict(Aggregate aggregate, LossKind loss,
                           const std::vector<std::vector<double>>& outputs, int64_t n,
                           int64_t width);

}  // namespace lethe::sisa
