// The random numbers of DP-SGD: Poisson sampling and Gaussian noise from one seeded
// generator, reproducible bit for bit.
//
// - Engine: std::mt19937_64, whose output sequence the C++ standard fixes for every seed.
// - Uniform: the top 53 bits of one 64-bit draw times 2⁻⁵³, in [0, 1) (not
//   std::uniform_real_distribution or std::normal_distribution: their algorithms are
//   implementation-defined, so two standard libraries would give two models).
// - Normal: Box–Muller, z₀ = √(−2 ln u₁) cos(2π u₂), z₁ = √(−2 ln u₁) sin(2π u₂) with
//   u₁ = 1 − U ∈ (0, 1] and u₂ = U′, both variates used in turn. u₁ ≥ 2⁻⁵³ truncates |z| at
//   √(2·53·ln 2) ≈ 8.57, a tail of mass ~1e-17, far below any δ.
// The same binary on the same libm reproduces exactly; std::log/cos/sin may differ in the
// last bit between C libraries. Mersenne Twister is not a cryptographic generator and
// floating-point Gaussian sampling is not exactly Gaussian (Mironov 2012): docs/privacy.md
// says what that means for the guarantee.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace lethe::privacy {

class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : engine_(seed) {}

  // Uniform in [0, 1), multiples of 2⁻⁵³.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  // Standard normal N(0, 1).
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - Uniform(), u2 = Uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1)), angle = 2.0 * M_PI * u2;
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

 private:
  std::mt19937_64 engine_;
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace lethe::privacy
