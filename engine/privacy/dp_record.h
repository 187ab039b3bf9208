// The differential-privacy guarantee a model was trained under (lethe train --dp), carried
// in the model file as __metadata__["lethe_dp"] (a JSON string, docs/formats.md) so that
// `lethe inspect` can show it wherever the file goes.
//
// Only the parameters and the guarantee are recorded, never the seed: whoever knows the
// seed can regenerate the noise and subtract it (docs/privacy.md). A model derived from
// this one through the training data by anything else (lethe unlearn's Newton patch,
// lethe train --init without --dp) is not covered, and does not carry the record.
#pragma once

#include <cstdint>
#include <string>

namespace lethe::privacy {

struct DpRecord {
  std::string mechanism = "dp-sgd";  // Poisson-subsampled Gaussian mechanism, per-example clipping
  std::string accountant;            // "rdp" (engine/privacy/rdp_accountant.h)
  int accountant_version = 0;
  double epsilon = 0;  // (ε, δ)-DP for adding or removing one training example
  double delta = 0;
  double best_order = 0;        // the RDP order that gave ε
  double noise_multiplier = 0;  // σ: the noise is N(0, σ²C²) per coordinate of the sum
  double max_grad_norm = 0;     // C: every per-example gradient clipped to ‖g‖ ≤ C
  double sample_rate = 0;       // q: Poisson inclusion probability per step
  int64_t steps = 0;            // T noisy steps
  int64_t epochs = 0;           // T = epochs · ⌈1/q⌉
  int64_t examples = 0;         // n: the training set the guarantee is about
  double learning_rate = 0;     // η (post-processing: does not affect ε)
  double l2 = 0;                // weight decay applied, (1 − η·l2)θ per step (post-processing)

  std::string ToJson() const;
  // Strict: unknown keys and wrong types are errors naming `where` (the file).
  static DpRecord Parse(const std::string& json, const std::string& where);
};

}  // namespace lethe::privacy
