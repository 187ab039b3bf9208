#include "engine/privacy/rdp_accountant.h"

#include <cmath>
#include <limits>

#include "common/error.h"

namespace lethe::privacy {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// The fractional series stops once both of a term's parts are below e⁻³⁰ (A_α ≥ 1, so the
// rest changes log A_α by less than ~1e-13 relative; Opacus stops at the same point).
constexpr double kSeriesCutoff = -30.0;
// A series that has not converged after this many terms has parameters far outside any
// training run (σ below ~1e-3); it is refused rather than looped on.
constexpr int kMaxSeriesTerms = 1000000;

// log(eˣ + eʸ) without overflow; −∞ stands for 0.
double LogAdd(double x, double y) {
  const double hi = std::max(x, y), lo = std::min(x, y);
  if (lo == -kInf) return hi;
  return hi + std::log1p(std::exp(lo - hi));
}

// log(eˣ − eʸ), x ≥ y. A y above x by rounding (the series' alternating tail) is a zero
// difference, never a negative one: A_α's two parts are integrals of positive functions.
double LogSub(double x, double y) {
  if (y == -kInf) return x;
  if (!(x > y)) return -kInf;
  return y + std::log(std::expm1(x - y));
}

}  // namespace

void SubsampledGaussian::Validate() const {
  if (!(noise_multiplier > 0) || !std::isfinite(noise_multiplier))
    Fail("--noise-multiplier = ", noise_multiplier, ": must be > 0 and finite");
  if (!(sample_rate > 0 && sample_rate <= 1))
    Fail("--sample-rate = ", sample_rate, ": must be in (0, 1]");
  if (steps < 0) Fail("--steps = ", steps, ": must be >= 0");
}

void NoiseSearchOptions::Validate() const {
  if (!(relative_tolerance > 0 && relative_tolerance < 1))
    Fail("NoiseSearchOptions::relative_tolerance = ", relative_tolerance, ": must be in (0, 1)");
  if (!(max_noise_multiplier > 0))
    Fail("NoiseSearchOptions::max_noise_multiplier = ", max_noise_multiplier, ": must be > 0");
}

std::vector<double> DefaultRdpOrders() {
  std::vector<double> orders;
  for (int x = 1; x <= 99; ++x) orders.push_back(1 + x / 10.0);
  for (int a = 12; a <= 63; ++a) orders.push_back(a);
  return orders;
}

namespace detail {

double LogErfc(double x) {
  // std::erfc is accurate to a few ulp while it is a normal number (x < ~26.5).
  if (x < 25) return std::log(std::erfc(x));
  // Asymptotic series: erfc(x) = e^{−x²}/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + …);
  // at x ≥ 25 the next term is below 1e-12 relative.
  const double r = 1 / (2 * x * x);
  const double series = 1 - r * (1 - 3 * r * (1 - 5 * r * (1 - 7 * r)));
  return -x * x - std::log(x) - 0.5 * std::log(M_PI) + std::log(series);
}

double LogAIntegerOrder(double q, double sigma, int alpha) {
  // A_α = Σ_{i=0..α} C(α,i) qⁱ (1−q)^{α−i} e^{(i²−i)/(2σ²)}: every term positive.
  const double log_q = std::log(q), log_1mq = std::log1p(-q), two_var = 2 * sigma * sigma;
  double log_a = -kInf, log_binom = 0;  // log C(α, 0)
  for (int i = 0; i <= alpha; ++i) {
    if (i > 0) log_binom += std::log(static_cast<double>(alpha - i + 1) / i);
    const double di = i;
    log_a =
        LogAdd(log_a, log_binom + di * log_q + (alpha - di) * log_1mq + (di * di - di) / two_var);
  }
  return log_a;
}

double LogAFractionalOrder(double q, double sigma, double alpha) {
  // The integral split at z₀, where (1−q) + q·μ₁/μ₀ has its two summands equal: below z₀
  // the generalised binomial series in q·μ₁/μ₀ / (1−q) converges, above it the one in
  // (1−q) / (q·μ₁/μ₀). C(α, i) alternates in sign once i > α, hence the subtractions.
  const double log_q = std::log(q), log_1mq = std::log1p(-q), two_var = 2 * sigma * sigma;
  const double z0 = sigma * sigma * std::log(1 / q - 1) + 0.5;
  const double scale = std::sqrt(2.0) * sigma;
  double log_a0 = -kInf, log_a1 = -kInf;
  double log_binom = 0, sign = 1;  // log |C(α, i)| and its sign, by C(α,i) = C(α,i−1)(α−i+1)/i
  for (int i = 0;; ++i) {
    if (i > 0) {
      const double factor = (alpha - i + 1) / i;
      if (factor < 0) sign = -sign;
      log_binom += std::log(std::abs(factor));
    }
    const double j = alpha - i;
    const double log_t0 = log_binom + i * log_q + j * log_1mq;
    const double log_t1 = log_binom + j * log_q + i * log_1mq;
    const double log_e0 = std::log(0.5) + LogErfc((i - z0) / scale);
    const double log_e1 = std::log(0.5) + LogErfc((z0 - j) / scale);
    const double log_s0 = log_t0 + (static_cast<double>(i) * i - i) / two_var + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / two_var + log_e1;
    if (sign > 0) {
      log_a0 = LogAdd(log_a0, log_s0);
      log_a1 = LogAdd(log_a1, log_s1);
    } else {
      log_a0 = LogSub(log_a0, log_s0);
      log_a1 = LogSub(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < kSeriesCutoff) break;
    if (i >= kMaxSeriesTerms)
      Fail("the RDP series at order ", alpha, " for sigma = ", sigma, ", q = ", q,
           " does not converge (noise multiplier too small)");
  }
  return LogAdd(log_a0, log_a1);
}

}  // namespace detail

double StepRdp(double noise_multiplier, double sample_rate, double order) {
  LETHE_CHECK(noise_multiplier > 0 && sample_rate > 0 && sample_rate <= 1 && order > 1);
  if (sample_rate == 1) return order / (2 * noise_multiplier * noise_multiplier);
  const double log_a =
      order == std::floor(order) && order < std::numeric_limits<int>::max()
          ? detail::LogAIntegerOrder(sample_rate, noise_multiplier, static_cast<int>(order))
          : detail::LogAFractionalOrder(sample_rate, noise_multiplier, order);
  return log_a / (order - 1);
}

PrivacySpent ComputeEpsilon(const SubsampledGaussian& mechanism, double delta,
                            const std::vector<double>& orders) {
  mechanism.Validate();
  if (!(delta > 0 && delta < 1)) Fail("--delta = ", delta, ": must be in (0, 1)");
  if (orders.empty()) Fail("no RDP orders given");
  for (double a : orders)
    if (!(a > 1) || !std::isfinite(a)) Fail("RDP order ", a, ": must be finite and > 1");
  PrivacySpent best;
  best.delta = delta;
  best.epsilon = kInf;
  best.best_order = orders.front();
  // No step releases nothing: ε = 0 exactly (the conversion below would add a slack > 0).
  if (mechanism.steps == 0) {
    best.epsilon = 0;
    return best;
  }
  size_t best_index = 0;
  for (size_t k = 0; k < orders.size(); ++k) {
    const double a = orders[k];
    const double rdp = static_cast<double>(mechanism.steps) *
                       StepRdp(mechanism.noise_multiplier, mechanism.sample_rate, a);
    // Balle et al. 2020, Thm. 21.
    const double eps = rdp + std::log((a - 1) / a) - (std::log(delta) + std::log(a)) / (a - 1);
    if (eps < best.epsilon) {
      best.epsilon = eps, best.best_order = a, best_index = k;
    }
  }
  // ε < 0 says no more than ε = 0 (no mechanism does better than revealing nothing).
  if (best.epsilon < 0) best.epsilon = 0;
  best.order_at_edge = std::isfinite(best.epsilon) && orders.size() > 1 &&
                       (best_index == 0 || best_index + 1 == orders.size());
  return best;
}

NoiseSearchResult NoiseMultiplierForEpsilon(const SubsampledGaussian& mechanism, double delta,
                                            double target_epsilon,
                                            const NoiseSearchOptions& options,
                                            const std::vector<double>& orders) {
  options.Validate();
  if (!(target_epsilon > 0) || !std::isfinite(target_epsilon))
    Fail("--target-epsilon = ", target_epsilon, ": must be > 0 and finite");
  if (mechanism.steps == 0) Fail("--steps = 0: no step spends privacy, so no noise is needed");
  SubsampledGaussian m = mechanism;
  NoiseSearchResult result;
  auto epsilon_at = [&](double sigma) {
    m.noise_multiplier = sigma;
    ++result.evaluations;
    return ComputeEpsilon(m, delta, orders);
  };
  // ε(σ) decreases in σ (every order's RDP does). Bracket, doubling from σ = 1, then bisect
  // keeping ε(σ_lo) > target ≥ ε(σ_hi).
  double lo = 0, hi = 1;
  PrivacySpent at_hi = epsilon_at(hi);
  while (at_hi.epsilon > target_epsilon) {
    lo = hi;
    hi *= 2;
    if (hi > options.max_noise_multiplier)
      Fail("--target-epsilon = ", target_epsilon, ": not reached with a noise multiplier up to ",
           options.max_noise_multiplier, " (q = ", mechanism.sample_rate, ", ", mechanism.steps,
           " steps, delta = ", delta, ")");
    at_hi = epsilon_at(hi);
  }
  // 200 halvings take any bracket below the tolerance unless σ* is ~1e-60; stop there.
  for (int it = 0; it < 200 && hi - lo > options.relative_tolerance * hi; ++it) {
    const double mid = 0.5 * (lo + hi);
    const PrivacySpent at_mid = epsilon_at(mid);
    if (at_mid.epsilon > target_epsilon) {
      lo = mid;
    } else {
      hi = mid, at_hi = at_mid;
    }
  }
  result.noise_multiplier = hi;
  result.spent = at_hi;
  return result;
}

double DefaultDelta(int64_t n) {
  LETHE_CHECK(n >= 1);
  // The smallest k with 10ᵏ ≥ n, at least 1 (δ < 1): δ = 10⁻ᵏ = 1/n rounded down to a power
  // of ten. 1/10ᵏ: 10ᵏ is exact in a double up to k = 22, the division correctly rounded.
  int k = 1;
  double power = 10;
  while (power < static_cast<double>(n)) power *= 10, ++k;
  return 1 / power;
}

}  // namespace lethe::privacy
