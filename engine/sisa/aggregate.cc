#include "engine/sisa/aggregate.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace lethe::sisa {

int64_t NumLabels(LossKind loss, int64_t width) {
  if (loss == LossKind::kLogistic) return 2;
  if (loss == LossKind::kCrossEntropy) return width;
  Fail("SISA ensembles aggregate classifiers only (cross_entropy, logistic); mse is not supported");
}

int64_t ConstituentLabel(LossKind loss, const double* f, int64_t width) {
  if (loss == LossKind::kLogistic) return f[0] > 0 ? 1 : 0;  // as the engine's accuracy
  int64_t best = 0;
  for (int64_t j = 1; j < width; ++j)
    if (f[j] > f[best]) best = j;
  return best;
}

void Probabilities(LossKind loss, const double* f, int64_t width, double* p) {
  if (loss == LossKind::kLogistic) {
    // σ(f) without overflow for either sign.
    const double s = f[0] >= 0 ? 1 / (1 + std::exp(-f[0])) : std::exp(f[0]) / (1 + std::exp(f[0]));
    p[0] = 1 - s;
    p[1] = s;
    return;
  }
  // softmax, shifted by the maximum so that exp never overflows.
  const double m = *std::max_element(f, f + width);
  double sum = 0;
  for (int64_t j = 0; j < width; ++j) sum += (p[j] = std::exp(f[j] - m));
  for (int64_t j = 0; j < width; ++j) p[j] /= sum;
}

EnsemblePrediction Predict(Aggregate aggregate, LossKind loss,
                           const std::vector<std::vector<double>>& outputs, int64_t n,
                           int64_t width) {
  const int64_t k = NumLabels(loss, width);
  const size_t c = outputs.size();
  LETHE_CHECK(c > 0);
  EnsemblePrediction out;
  out.label.resize(n);
  // The lowest label among the largest scores: strict > keeps the first maximum.
  auto first_max = [&](const double* s) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
      if (s[j] > s[best]) best = j;
    return best;
  };
  std::vector<double> score(k), p(k);
  if (aggregate == Aggregate::kMean) out.probability.assign(n * k, 0);
  for (int64_t i = 0; i < n; ++i) {
    std::fill(score.begin(), score.end(), 0);
    for (size_t m = 0; m < c; ++m) {
      const double* f = outputs[m].data() + i * width;
      if (aggregate == Aggregate::kVote) {
        score[ConstituentLabel(loss, f, width)] += 1;
      } else {
        Probabilities(loss, f, width, p.data());
        for (int64_t j = 0; j < k; ++j) score[j] += p[j];
      }
    }
    if (aggregate == Aggregate::kMean)
      for (int64_t j = 0; j < k; ++j) out.probability[i * k + j] = score[j] / static_cast<double>(c);
    out.label[i] = first_max(score.data());
  }
  return out;
}

}  // namespace lethe::sisa
