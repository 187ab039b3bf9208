// The RDP accountant (engine/privacy/rdp_accountant.h): Opacus's published values, the
// closed form without subsampling, both series against a direct numerical integration of
// A_α, the two series against each other, monotonicity, and the σ search.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/error.h"
#include "engine/privacy/rdp_accountant.h"

namespace lethe::privacy {
namespace {

// Opacus's test pins ε to 7 places; the issue asks for 1e-9 (the accountant's arithmetic is
// ~1e-13 relative per order, times 2250 steps).
constexpr double kReferenceTolerance = 1e-9;
// Two exact formulas for one quantity in double: rounding only.
constexpr double kSeriesTolerance = 1e-11;
// Simpson's rule on 100,001 points over a smooth integrand: ~1e-12 relative.
constexpr double kQuadratureTolerance = 1e-9;

// σ = 1.5, q = 0.04, 90 epochs (2250 steps), δ = 1e-5: opacus/tests/accountants_test.py,
// test_rdp_accountant.
TEST(RdpAccountant, ReproducesOpacusReferenceEpsilon) {
  const PrivacySpent s = ComputeEpsilon({1.5, 0.04, 2250}, 1e-5);
  EXPECT_NEAR(s.epsilon, 7.32911117143, kReferenceTolerance);
  EXPECT_EQ(s.delta, 1e-5);
  EXPECT_FALSE(s.order_at_edge);
  // The minimiser is an interior order of the default grid.
  const std::vector<double> orders = DefaultRdpOrders();
  EXPECT_GT(s.best_order, orders.front());
  EXPECT_LT(s.best_order, orders.back());
}

TEST(RdpAccountant, DefaultOrdersAreOpacus) {
  const std::vector<double> orders = DefaultRdpOrders();
  ASSERT_EQ(orders.size(), 99u + 52u);
  EXPECT_EQ(orders[0], 1.1);
  EXPECT_EQ(orders[98], 10.9);
  EXPECT_EQ(orders[99], 12.0);
  EXPECT_EQ(orders.back(), 63.0);
}

// Without subsampling the mechanism is the Gaussian mechanism, RDP α/(2σ²) per step, and ε
// is the conversion minimised over the orders by hand.
TEST(RdpAccountant, NoSubsamplingIsTheGaussianMechanism) {
  for (double sigma : {0.7, 1.0, 4.0, 30.0})
    for (int64_t steps : {1, 10, 1000})
      for (double delta : {1e-3, 1e-5, 1e-9}) {
        double expected = INFINITY;
        for (double a : DefaultRdpOrders()) {
          EXPECT_DOUBLE_EQ(StepRdp(sigma, 1.0, a), a / (2 * sigma * sigma));
          expected = std::min(expected, steps * a / (2 * sigma * sigma) + std::log((a - 1) / a) -
                                            (std::log(delta) + std::log(a)) / (a - 1));
        }
        EXPECT_NEAR(ComputeEpsilon({sigma, 1.0, steps}, delta).epsilon,
                    std::max(0.0, expected), 1e-12 * std::max(1.0, expected))
            << sigma << " " << steps << " " << delta;
      }
}

// The subsampled series tend to the unsubsampled value as q → 1 (both series: integer and
// fractional orders), and to 0 as q → 0.
TEST(RdpAccountant, SeriesTendToTheirLimits) {
  const double sigma = 2.0;
  for (double a : {2.0, 3.0, 2.5, 7.3}) {
    EXPECT_NEAR(StepRdp(sigma, 1 - 1e-9, a), a / (2 * sigma * sigma), 1e-7) << a;
    EXPECT_LT(StepRdp(sigma, 1e-9, a), 1e-15) << a;
  }
}

// A_α = ∫ μ₀(z) ((1 − q) + q e^{(2z−1)/(2σ²)})^α dz by Simpson's rule in log space, against
// both series: independent of the binomial expansions and of the split at z₀.
double LogAByQuadrature(double q, double sigma, double alpha) {
  const double lo = -40 * sigma, hi = 40 * sigma + 2 * alpha;
  const int intervals = 100000;
  const double h = (hi - lo) / intervals;
  std::vector<double> log_f(intervals + 1);
  double peak = -INFINITY;
  for (int k = 0; k <= intervals; ++k) {
    const double z = lo + k * h;
    const double log_mu0 = -z * z / (2 * sigma * sigma) - std::log(sigma * std::sqrt(2 * M_PI));
    const double ratio = (2 * z - 1) / (2 * sigma * sigma);  // log μ₁/μ₀
    // log((1−q) + q e^ratio), stably.
    const double a = std::log1p(-q), b = std::log(q) + ratio;
    const double log_mix = std::max(a, b) + std::log1p(std::exp(-std::abs(a - b)));
    log_f[k] = log_mu0 + alpha * log_mix;
    peak = std::max(peak, log_f[k]);
  }
  double sum = 0;
  for (int k = 0; k <= intervals; ++k) {
    const double w = (k == 0 || k == intervals) ? 1 : (k % 2 ? 4 : 2);
    sum += w * std::exp(log_f[k] - peak);
  }
  return peak + std::log(sum * h / 3);
}

TEST(RdpAccountant, SeriesMatchNumericalIntegration) {
  struct Case {
    double q, sigma, alpha;
  };
  for (const Case& c : {Case{0.04, 1.5, 2}, Case{0.04, 1.5, 5.5}, Case{0.04, 1.5, 12},
                        Case{0.01, 0.8, 3.7}, Case{0.3, 1.0, 1.1}, Case{0.5, 3.0, 20},
                        Case{0.001, 1.1, 9.9}, Case{0.2, 2.0, 40}}) {
    const double rdp = StepRdp(c.sigma, c.q, c.alpha);
    const double numeric = LogAByQuadrature(c.q, c.sigma, c.alpha) / (c.alpha - 1);
    EXPECT_NEAR(rdp, numeric, kQuadratureTolerance * std::max(1.0, numeric))
        << "q " << c.q << " sigma " << c.sigma << " alpha " << c.alpha;
  }
}

// At integer orders the fractional series (split at z₀) is still exact: it must agree with
// the binomial expansion.
TEST(RdpAccountant, FractionalSeriesAgreesWithBinomialAtIntegerOrders) {
  for (double q : {0.001, 0.04, 0.5})
    for (double sigma : {0.9, 1.5, 5.0})
      for (int alpha : {2, 3, 8, 20}) {
        const double binomial = detail::LogAIntegerOrder(q, sigma, alpha);
        const double series = detail::LogAFractionalOrder(q, sigma, alpha);
        EXPECT_NEAR(series, binomial, kSeriesTolerance * std::max(1.0, std::abs(binomial)))
            << q << " " << sigma << " " << alpha;
      }
}

TEST(RdpAccountant, LogErfcIsContinuousAndAccurate) {
  for (double x : {-3.0, 0.0, 0.5, 5.0, 20.0})
    EXPECT_NEAR(detail::LogErfc(x), std::log(std::erfc(x)), 1e-13 * std::max(1.0, x * x));
  // Across the switch to the asymptotic series at 25.
  const double below = detail::LogErfc(std::nextafter(25.0, 0.0)), at = detail::LogErfc(25.0);
  EXPECT_NEAR(below, at, 1e-12 * std::abs(at));
  // Far beyond where erfc underflows: −x² − log(x√π) dominates.
  EXPECT_NEAR(detail::LogErfc(1e6), -1e12 - std::log(1e6 * std::sqrt(M_PI)), 1e-3);
}

TEST(RdpAccountant, EpsilonIsMonotone) {
  const SubsampledGaussian base{1.1, 0.01, 1000};
  const double delta = 1e-5;
  const double eps = ComputeEpsilon(base, delta).epsilon;
  SubsampledGaussian m = base;
  m.steps = 2000;
  EXPECT_GT(ComputeEpsilon(m, delta).epsilon, eps);  // more steps
  m = base;
  m.sample_rate = 0.02;
  EXPECT_GT(ComputeEpsilon(m, delta).epsilon, eps);  // larger batches
  m = base;
  m.noise_multiplier = 1.2;
  EXPECT_LT(ComputeEpsilon(m, delta).epsilon, eps);  // more noise
  EXPECT_LT(ComputeEpsilon(base, 1e-3).epsilon, eps);  // larger δ
  // Along a fine σ grid, strictly decreasing.
  double previous = INFINITY;
  for (double sigma = 0.6; sigma < 5; sigma += 0.1) {
    m = base;
    m.noise_multiplier = sigma;
    const double e = ComputeEpsilon(m, delta).epsilon;
    EXPECT_LT(e, previous) << sigma;
    previous = e;
  }
}

TEST(RdpAccountant, ZeroStepsSpendNothing) {
  EXPECT_EQ(ComputeEpsilon({1.0, 0.1, 0}, 1e-5).epsilon, 0.0);
}

// opacus/tests/accountants_test.py: get_noise_multiplier(ε = 8, δ = 1e-5, q = 0.04) is 1.416
// for 90 epochs and 1.3562 for 2000 steps, to 4 places (Opacus stops its bisection within
// 0.01 of the target ε, lethe within a relative 1e-6 of σ, so the two agree to ~1e-3).
TEST(RdpAccountant, NoiseMultiplierForTargetEpsilon) {
  for (auto [steps, opacus_sigma] : {std::pair<int64_t, double>{2250, 1.416}, {2000, 1.3562}}) {
    const NoiseSearchOptions options;
    const NoiseSearchResult r = NoiseMultiplierForEpsilon({0, 0.04, steps}, 1e-5, 8.0, options);
    EXPECT_NEAR(r.noise_multiplier, opacus_sigma, 2e-3) << steps;
    // The contract: the σ returned meets the target, one a tolerance below does not.
    EXPECT_LE(r.spent.epsilon, 8.0);
    EXPECT_EQ(r.spent.epsilon, ComputeEpsilon({r.noise_multiplier, 0.04, steps}, 1e-5).epsilon);
    const double below = r.noise_multiplier * (1 - 2 * options.relative_tolerance);
    EXPECT_GT(ComputeEpsilon({below, 0.04, steps}, 1e-5).epsilon, 8.0);
  }
}

TEST(RdpAccountant, NoiseSearchGivesUpBeyondTheLimit) {
  NoiseSearchOptions options;
  options.max_noise_multiplier = 4;
  EXPECT_THROW(NoiseMultiplierForEpsilon({0, 0.5, 100000}, 1e-9, 0.01, options), Error);
}

TEST(RdpAccountant, RejectsBadParameters) {
  EXPECT_THROW(ComputeEpsilon({0.0, 0.1, 10}, 1e-5), Error);
  EXPECT_THROW(ComputeEpsilon({1.0, 0.0, 10}, 1e-5), Error);
  EXPECT_THROW(ComputeEpsilon({1.0, 1.5, 10}, 1e-5), Error);
  EXPECT_THROW(ComputeEpsilon({1.0, 0.1, -1}, 1e-5), Error);
  EXPECT_THROW(ComputeEpsilon({1.0, 0.1, 10}, 0.0), Error);
  EXPECT_THROW(ComputeEpsilon({1.0, 0.1, 10}, 1.0), Error);
  EXPECT_THROW(ComputeEpsilon({1.0, 0.1, 10}, 1e-5, {1.0}), Error);
  EXPECT_THROW(NoiseMultiplierForEpsilon({1.0, 0.1, 10}, 1e-5, 0.0), Error);
  EXPECT_THROW(NoiseMultiplierForEpsilon({1.0, 0.1, 0}, 1e-5, 1.0), Error);
}

TEST(RdpAccountant, DefaultDeltaIsOneOverNRoundedDownToAPowerOfTen) {
  EXPECT_EQ(DefaultDelta(1437), 1e-4);
  EXPECT_EQ(DefaultDelta(1000), 1e-3);
  EXPECT_EQ(DefaultDelta(1001), 1e-4);
  EXPECT_EQ(DefaultDelta(10000), 1e-4);
  EXPECT_EQ(DefaultDelta(60000), 1e-5);
  EXPECT_EQ(DefaultDelta(1), 0.1);  // δ < 1 always
}

}  // namespace
}  // namespace lethe::privacy
