// The privacy accountant of DP-SGD: Rényi differential privacy (RDP, Mironov 2017) of the
// Poisson-subsampled Gaussian mechanism, composed over steps and converted to (ε, δ).
//
// One step releases Σ_{i∈B} clip(gᵢ) + N(0, σ²C²I), B drawn by including every example
// independently with probability q. With the sensitivity scaled to 1 its RDP at order α is
// (Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
// Mechanism", §3.3)
//
//   ε_step(α) = log A_α / (α − 1),   A_α = E_{z∼μ₀} [((1 − q) + q·μ₁(z)/μ₀(z))^α]
//
// with μ₀ = N(0, σ²), μ₁ = N(1, σ²), μ₁(z)/μ₀(z) = exp((2z − 1)/(2σ²)).
// - Integer α: binomial expansion, each term a Gaussian moment in closed form,
//     A_α = Σ_{i=0..α} C(α,i) qⁱ (1 − q)^{α−i} exp((i² − i)/(2σ²)).
// - Fractional α: split the integral at z₀ = σ² log(1/q − 1) + ½, where μ₁/μ₀ = (1 − q)/q;
//   on each side the generalised binomial series converges and each term is a truncated
//   Gaussian moment (an erfc):
//     A_α = Σ_{i≥0} C(α,i) [ qⁱ (1−q)^{α−i} e^{(i²−i)/(2σ²)} ½ erfc((i − z₀)/(√2 σ))
//                          + q^{α−i} (1−q)ⁱ e^{(j²−j)/(2σ²)} ½ erfc((z₀ − j)/(√2 σ)) ],  j = α − i,
//   summed until both terms fall below e⁻³⁰. Everything is in log space (terms reach e^{±100s}).
// - q = 1 (no subsampling): ε_step(α) = α/(2σ²), the Gaussian mechanism's RDP.
//
// RDP composes by addition: T steps cost T·ε_step(α) at every α. The conversion to (ε, δ)
// is Balle, Barthe, Gaboardi, Hsu & Sato 2020 ("Hypothesis testing interpretations and
// Rényi differential privacy", Thm. 21), minimised over the orders:
//
//   ε = min_α  T·ε_step(α) + log((α − 1)/α) − (log δ + log α)/(α − 1).
//
// This is the accountant Opacus's RDPAccountant implements (same orders, same series,
// same conversion); its published value σ = 1.5, q = 0.04, T = 2250, δ = 1e-5 →
// ε = 7.32911117143 is reproduced to 1e-9 (tests/engine/test_privacy.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lethe::privacy {

// Name and version recorded with every guarantee (a model's "lethe_dp" metadata): the
// version changes whenever a number this accountant returns could change.
inline constexpr const char* kRdpAccountantName = "rdp";
inline constexpr int kRdpAccountantVersion = 1;

// Opacus's default orders: 1.1, 1.2, …, 10.9 (1 + x/10, x = 1..99), then 12, 13, …, 63.
std::vector<double> DefaultRdpOrders();

// The mechanism: T steps of the Poisson-subsampled Gaussian mechanism.
struct SubsampledGaussian {
  double noise_multiplier =
      1.0;                    // σ: noise standard deviation / sensitivity (the clip norm C); > 0
  double sample_rate = 0.01;  // q: each example's inclusion probability per step, in (0, 1]
  int64_t steps = 1;          // T ≥ 0
  void Validate() const;      // throws lethe::Error naming the option
};

// RDP of one step at order α > 1 (nats); +inf only if it overflows.
double StepRdp(double noise_multiplier, double sample_rate, double order);

struct PrivacySpent {
  double epsilon = 0;     // ε of (ε, δ)-DP; +inf when no order gives a finite bound
  double delta = 0;       // the δ it was asked for
  double best_order = 0;  // the α that attains the minimum
  // The minimum is at the smallest or the largest order: a wider range might give a
  // smaller ε (the bound stays valid; it may be loose).
  bool order_at_edge = false;
};

// (ε, δ) of `mechanism` for δ ∈ (0, 1), over `orders` (each > 1; default: Opacus's).
PrivacySpent ComputeEpsilon(const SubsampledGaussian& mechanism, double delta,
                            const std::vector<double>& orders = DefaultRdpOrders());

struct NoiseSearchOptions {
  // Bisection stops when the bracket [σ_lo, σ_hi] (ε(σ_lo) > target ≥ ε(σ_hi)) is narrower
  // than relative_tolerance · σ_hi; σ_hi is returned, so ε(σ) ≤ target always holds and σ
  // is within this relative distance of the smallest σ that meets the target.
  double relative_tolerance = 1e-6;
  double max_noise_multiplier = 1e4;  // give up (throw) above this σ
  void Validate() const;
};

struct NoiseSearchResult {
  double noise_multiplier = 0;  // σ_hi
  PrivacySpent spent;           // at that σ (ε ≤ target)
  int evaluations = 0;          // ComputeEpsilon calls
};

// The smallest σ (to the tolerance) whose ε for (q, T, δ) is ≤ target_epsilon > 0;
// mechanism.noise_multiplier is ignored. Throws lethe::Error when no σ up to the maximum
// meets the target.
NoiseSearchResult NoiseMultiplierForEpsilon(const SubsampledGaussian& mechanism, double delta,
                                            double target_epsilon,
                                            const NoiseSearchOptions& options = {},
                                            const std::vector<double>& orders = DefaultRdpOrders());

// The usual δ for n examples: 1/n rounded down to a power of ten, 10^⌊log₁₀(1/n)⌋
// (n = 1437 → 1e-4, n = 1000 → 1e-3, n = 10,000 → 1e-4).
double DefaultDelta(int64_t n);

namespace detail {
// log A_α by the two series (exposed for tests: at integer α both must agree).
double LogAIntegerOrder(double q, double sigma, int alpha);
double LogAFractionalOrder(double q, double sigma, double alpha);
// log erfc(x), accurate where erfc underflows (x up to 1e150).
double LogErfc(double x);
}  // namespace detail

}  // namespace lethe::privacy
