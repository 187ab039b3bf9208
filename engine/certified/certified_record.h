// What a model trained with `lethe train --certified` carries about its certified-removal
// state (Guo, Goldstein, Hannun & van der Maaten 2020; docs/privacy.md, "Certified
// removal"), in the model file as __metadata__["lethe_certified"] (a flat JSON string).
//
// The perturbation b itself is a secret and is never in here: only its SHA-256 (of its p
// float64 values, little-endian), so that `lethe unlearn --certified --b FILE` can refuse
// another model's b. Nor is the seed that drew it. Everything else the next removal needs
// is here: σ, γ, the accumulated gradient-residual bound β and the example count.
#pragma once

#include <cstdint>
#include <string>

namespace lethe::certified {

struct CertifiedRecord {
  std::string mechanism = "objective-perturbation";  // Σ lᵢ + (n·l2/2)‖θ‖² + bᵀθ, b ~ N(0, σ²I)
  int version = 1;
  double sigma = 0;          // σ of b
  std::string b_sha256;      // SHA-256 of b's values (engine/certified/perturbation.h)
  std::string b_generator;   // how b was drawn from its (unrecorded) seed
  std::string loss;          // logistic, mse or cross_entropy
  double gamma = 0;          // Lipschitz constant of the loss's second derivative (docs/maths.md)
  double l2 = 0;             // λ per example: the sum-form regulariser is (m·l2/2)‖θ‖², m = examples
  int64_t examples_trained = 0;  // n when b was drawn and the model trained
  int64_t examples = 0;          // m: examples the model now stands for (n − removed)
  int64_t removals = 0;          // certified removal requests applied since training
  int64_t removed = 0;           // examples they removed
  double beta = 0;               // Σ of the removals' gradient-residual bounds (sum form)
  double delta = 0;              // δ of the last removal (0 before any)
  double epsilon = 0;            // c(δ)·β/σ at that δ (0 before any removal)
  double epsilon_budget = 0;     // the budget the last removal was checked against
  double x_norm_bound = 0;       // the last removal's guaranteed upper bound on ‖X‖₂
  double train_grad_norm = 0;    // ‖∇L‖ (mean form, with bᵀθ/n) when training stopped

  std::string ToJson() const;
  // Strict: unknown keys and wrong types are errors naming `where` (the file).
  static CertifiedRecord Parse(const std::string& json, const std::string& where);
};

}  // namespace lethe::certified
