// Unlearning: move θ, trained on all n examples, to the optimum of the objective over the
// kept examples K = all minus the forget set S (k = |S|), without retraining:
//
//   L₋ₛ(θ) = (1/(n−k)) Σ_{i∈K} lᵢ(θ) + (l2/2)‖θ‖²
//
// newton: θ' = θ − (H₋ₛ(θ) + λI)⁻¹ ∇L₋ₛ(θ), repeated `steps` times at the new point (on a
// convex model it converges quadratically to the retrained optimum). H₋ₛ is the Hessian
// of L₋ₛ (or its Gauss-Newton matrix). On a non-convex model H₋ₛ can be indefinite and a
// plain Newton step can land farther from the retrained model than it started, so each
// step is safeguarded and the safeguards are reported, never silent:
//   - negative curvature → the damping is raised until the solve is positive definite
//     (λ ← λ + 1.1·|μ_min| from the direct solver, else λ ← max(10λ, 1e-6·λ_max));
//   - backtracking line search on L₋ₛ: the step is halved until L₋ₛ decreases
//     (Armijo), and refused when no step length does.
// gradient-ascent: the baseline of the unlearning literature, approximate by design:
//   θ ← θ + η ∇ℓ_S(θ) − η·kept_weight·∇L₋ₛ(θ), ℓ_S the mean forget-set loss.
#pragma once

#include <string>
#include <vector>

#include "engine/inverse_hvp.h"

namespace lethe {

enum class UnlearnMethod { kNewton, kGradientAscent };
const char* Name(UnlearnMethod m);
UnlearnMethod ParseUnlearnMethod(const std::string& name);  // throws lethe::Error

struct UnlearnOptions {
  UnlearnMethod method = UnlearnMethod::kNewton;
  int steps = 1;              // newton steps, or gradient-ascent steps
  InverseHvpOptions inverse;  // newton: solver, curvature, damping λ (the starting damping)
  bool line_search = true;    // newton: backtrack on L₋ₛ (always on for non-convex safety)
  int max_damping_raises = 8;
  // cg: solve each Newton step only as accurately as it can matter (inexact Newton,
  // Eisenstat & Walker): relative tolerance min(1e-4, ‖∇L₋ₛ‖), floored at 1e-12, instead
  // of inverse.cg.relative_tolerance. The step's own error from the curvature changing
  // along it is far larger than 1e-4, and ‖∇L₋ₛ‖ → 0 keeps later steps superlinear.
  bool adaptive_cg_tolerance = true;
  double learning_rate = 0.01;  // gradient-ascent: η
  double kept_weight = 0.0;     // gradient-ascent: weight of the descent on kept data
  void Validate() const;
};

struct UnlearnStep {
  SolveSummary solve;
  double damping = 0;          // λ actually used
  double step_length = 1;      // t of θ − t·d accepted (0: refused)
  double kept_objective_before = 0, kept_objective_after = 0;
  double kept_grad_norm_before = 0, kept_grad_norm_after = 0;
  std::string action;          // what the safeguards did, in words
};

struct UnlearnSummary {
  std::string method;
  std::vector<UnlearnStep> steps;
  double kept_grad_norm_before = 0, kept_grad_norm_after = 0;  // ‖∇L₋ₛ‖
  double delta_norm = 0;                                       // ‖θ' − θ‖
  double seconds = 0;
  bool ok = true;            // false: a solve failed and nothing should be written
  std::string message;
};

// `kept` is the objective over the kept examples, `forget` over the forget set (used by
// gradient ascent only). θ (1 × p) is updated in place.
template <typename T>
UnlearnSummary Unlearn(Objective<T>& kept, Objective<T>& forget, kernels::Matrix<T> theta,
                       const UnlearnOptions& options);

}  // namespace lethe
