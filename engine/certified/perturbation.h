// The secret linear term of a certified model's objective, b ~ N(0, σ²I) (p values, one per
// trainable parameter), and its fingerprint.
//
// b is drawn from the same documented generator as DP-SGD's noise
// (engine/privacy/seeded_random.h: std::mt19937_64 seeded with the seed, Box–Muller
// normals, both variates used in turn): b_j = σ·z_j for j = 0 … p−1. The same seed and p
// give the same b bit for bit on one C library. The seed is never recorded: whoever knows
// it knows b, and with b the removal is no longer certified (docs/privacy.md).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/privacy/seeded_random.h"
#include "io/sha256.h"

namespace lethe::certified {

inline constexpr const char* kPerturbationGenerator = "mt19937_64 box-muller (seeded_random.h) v1";

inline std::vector<double> DrawPerturbation(uint64_t seed, int64_t p, double sigma) {
  privacy::SeededRandom random(seed);
  std::vector<double> b(static_cast<size_t>(p));
  for (double& v : b) v = sigma * random.Normal();
  return b;
}

// SHA-256 of b's values as little-endian float64 (the file format does not enter it).
inline std::string PerturbationSha256(const std::vector<double>& b) {
  static_assert(sizeof(double) == 8);
  std::string bytes(b.size() * 8, '\0');
  for (size_t i = 0; i < b.size(); ++i) {
    uint64_t bits;
    std::memcpy(&bits, &b[i], 8);
    for (int k = 0; k < 8; ++k) bytes[8 * i + k] = static_cast<char>((bits >> (8 * k)) & 0xff);
  }
  return io::Sha256Hex(bytes);
}

}  // namespace lethe::certified
