// Correlation statistics for checking predictions against measured ground truth
// (lethe validate-influence: predicted against actual change of a test loss).
//
// - Pearson's r = Σ (xᵢ − x̄)(yᵢ − ȳ) / √(Σ (xᵢ − x̄)² Σ (yᵢ − ȳ)²), computed from centred
//   values (two passes), so that large common offsets do not cancel digits away.
// - Spearman's ρ = Pearson's r of the ranks, with tied values given the average of the
//   ranks they span (the "fractional ranking": 10, 20, 20, 30 → 1, 2.5, 2.5, 4). This is the
//   definition that stays correct with ties; the textbook 1 − 6Σd²/(n(n²−1)) is not.
//
// Both are NaN when undefined: fewer than two pairs, or a constant x or y (zero variance).
#pragma once

#include <vector>

namespace lethe::stats {

double Pearson(const std::vector<double>& x, const std::vector<double>& y);
double Spearman(const std::vector<double>& x, const std::vector<double>& y);
// 1-based fractional ranks: ties get the mean of the ranks they occupy. NaN is not allowed
// (callers pass finite values; a NaN has no place in an order).
std::vector<double> FractionalRanks(const std::vector<double>& v);

}  // namespace lethe::stats
