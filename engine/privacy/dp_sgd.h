// DP-SGD (Abadi et al. 2016) with Poisson sampling, the mechanism the RDP accountant
// (engine/privacy/rdp_accountant.h) bounds. Each step t:
//
//   B_t   = {i : Uᵢ < q}                              every example independently, rate q
//   ḡᵢ    = gᵢ · min(1, C/‖gᵢ‖),  gᵢ = ∇_θ lᵢ(θ_t)     per-example gradients over all of θ, clipped
//   g̃     = (Σ_{i∈B_t} ḡᵢ + N(0, σ²C² I)) / (q·n)     noise on the sum; divided by the
//                                                      expected batch size (a fixed number,
//                                                      so the division costs no privacy)
//   θ_t+1 = (1 − η·l2) θ_t − η g̃                     plain SGD; l2 as weight decay
//
// One step changes by at most C in the sum when one example is added or removed, so it
// is the subsampled Gaussian mechanism with sensitivity C and noise σC; weight decay and
// the learning rate touch only θ and η, never the data: post-processing, no privacy cost.
// T = epochs · ⌈1/q⌉ steps (⌈1/q⌉ steps sample n examples in expectation).
//
// Per-example gradients come from Objective::PerExampleGradients in blocks of at most
// block_elements / p rows, so memory is O(block_elements), whatever the batch.
// Randomness: one SeededRandom (engine/privacy/seeded_random.h) drawn in a fixed order
// (step t: n uniforms for the sample, then p normals for the noise), so a seed reproduces
// a run bit for bit on the CPU.
#pragma once

#include <cstdint>
#include <functional>

#include "engine/objective.h"

namespace lethe::privacy {

struct DpSgdOptions {
  double max_grad_norm = 1.0;     // C > 0
  double noise_multiplier = 1.0;  // σ ≥ 0 (0: clipped SGD without noise, no guarantee)
  double sample_rate = 0.01;      // q ∈ (0, 1]
  int64_t epochs = 1;             // ≥ 0
  double learning_rate = 0.1;     // η > 0
  uint64_t seed = 0;
  // Per-example gradient block: rows × p ≤ this many elements (2²² : 32 MB in f64).
  int64_t block_elements = int64_t{1} << 22;

  int64_t StepsPerEpoch() const;  // ⌈1/q⌉
  int64_t Steps() const { return epochs * StepsPerEpoch(); }
  void Validate() const;  // throws lethe::Error naming the option
};

struct DpSgdProgress {
  int64_t epoch;     // 1-based
  int64_t step;      // steps done
  double objective;  // full-data objective at the end of the epoch (not private)
  double grad_norm;
};

struct DpSgdSummary {
  int64_t steps = 0;
  int64_t sampled = 0;   // Σ_t |B_t|
  int64_t clipped = 0;   // per-example gradients with ‖gᵢ‖ > C
  double objective = 0;  // final, full data (reported to the operator, not private)
  double grad_norm = 0;
  double seconds = 0;
};

// θ (1 × p) holds the starting point and receives the result. The objective's data are
// the n examples the guarantee is about.
template <typename T>
DpSgdSummary TrainDpSgd(Objective<T>& objective, kernels::Matrix<T> theta,
                        const DpSgdOptions& options,
                        const std::function<void(const DpSgdProgress&)>& progress = {});

}  // namespace lethe::privacy
