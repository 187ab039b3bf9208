// engine/stats/correlation.h against values computed by hand (shown in the comments), ties
// included: Spearman must use fractional ranks, and the textbook 1 − 6Σd²/(n(n²−1)) would
// give a different number on the tied case below.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/stats/correlation.h"

namespace lethe::stats {
namespace {

TEST(Correlation, PearsonByHand) {
  // x̄ = 3, ȳ = 4; dx = −2,−1,0,1,2; dy = −2,0,1,0,1; Σdxdy = 6, Σdx² = 10, Σdy² = 6:
  // r = 6/√60.
  const std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 5, 4, 5};
  EXPECT_NEAR(Pearson(x, y), 6 / std::sqrt(60.0), 1e-15);
  EXPECT_NEAR(Pearson(y, x), 6 / std::sqrt(60.0), 1e-15);
  // Sign: reversing y reverses r.
  const std::vector<double> minus_y = {-2, -4, -5, -4, -5};
  EXPECT_NEAR(Pearson(x, minus_y), -6 / std::sqrt(60.0), 1e-15);
}

TEST(Correlation, RanksWithTies) {
  // 2 < 4 = 4 < 5 = 5: ranks 1, (2+3)/2, (4+5)/2.
  const std::vector<double> r = FractionalRanks({2, 4, 5, 4, 5});
  const std::vector<double> expected = {1, 2.5, 4.5, 2.5, 4.5};
  ASSERT_EQ(r.size(), expected.size());
  for (size_t i = 0; i < r.size(); ++i) EXPECT_EQ(r[i], expected[i]) << i;
  const std::vector<double> all_tied = FractionalRanks({7, 7, 7});
  for (double v : all_tied) EXPECT_EQ(v, 2);
}

TEST(Correlation, SpearmanWithTiesByHand) {
  // Ranks of x: 1..5; of y: 1, 2.5, 4.5, 2.5, 4.5 (mean 3): d = −2,−0.5,1.5,−0.5,1.5;
  // Σ = 4 + 0.5 + 0 − 0.5 + 3 = 7, Σdx² = 10, Σdy² = 9: ρ = 7/√90 = 0.73786…
  // (1 − 6Σd²/(n(n²−1)) with Σd² = 5 would say 0.75).
  const std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 5, 4, 5};
  EXPECT_NEAR(Spearman(x, y), 7 / std::sqrt(90.0), 1e-15);
  EXPECT_GT(std::abs(Spearman(x, y) - 0.75), 1e-3);
}

TEST(Correlation, MonotoneButNotLinear) {
  const std::vector<double> x = {1, 2, 3, 4, 5}, cube = {1, 8, 27, 64, 125};
  EXPECT_DOUBLE_EQ(Spearman(x, cube), 1.0);
  EXPECT_LT(Pearson(x, cube), 0.95);
  const std::vector<double> falling = {9, 3, 1, -4, -100};
  EXPECT_DOUBLE_EQ(Spearman(x, falling), -1.0);
}

TEST(Correlation, LargeOffsetKeepsDigits) {
  // A common offset of 1e9 must not change r (centred sums, not Σxy − n x̄ȳ).
  const std::vector<double> x = {1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4, 1e9 + 5};
  const std::vector<double> y = {1e9 + 2, 1e9 + 4, 1e9 + 5, 1e9 + 4, 1e9 + 5};
  EXPECT_NEAR(Pearson(x, y), 6 / std::sqrt(60.0), 1e-12);
}

TEST(Correlation, UndefinedIsNaN) {
  EXPECT_TRUE(std::isnan(Pearson({1}, {2})));
  EXPECT_TRUE(std::isnan(Pearson({}, {})));
  EXPECT_TRUE(std::isnan(Pearson({1, 2, 3}, {4, 4, 4})));
  EXPECT_TRUE(std::isnan(Spearman({5, 5, 5}, {1, 2, 3})));
}

}  // namespace
}  // namespace lethe::stats
