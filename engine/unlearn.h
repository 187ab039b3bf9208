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

// The precision of a Newton step's solve. The step's direction is needed only to the
// forcing term η (≥ 1e-4 for most steps: see UnlearnOptions::adaptive_cg_tolerance), far
// above f32's rounding (6e-8), while the gradient it answers and the line search stay in
// the compute precision: mixed-precision inexact Newton. In f32 each pass over the data
// moves half the bytes and runs twice the SIMD width.
enum class SolvePrecision { kAuto, kF32, kF64 };  // kF64: the compute precision
const char* Name(SolvePrecision p);
SolvePrecision ParseSolvePrecision(const std::string& name);  // throws lethe::Error

// The kept objective and its gradient at a θ, over `examples` kept rows (host, in f64):
// what a Newton request's line search computed at the θ it accepted, carried to the next
// request at that θ (lethe unlearn --requests). The next request removes k more rows S, and
// both objectives are means plus the same (l2/2)‖θ‖², so over its n − k kept rows
//
//   L₋ₛ = (n·L − k·L_S) / (n − k),   ∇L₋ₛ = (n·∇L − k·∇L_S) / (n − k)
//
// (the l2 terms cancel: n·R − k·R = (n − k)·R): one pass over the k removed rows instead of
// one over the n − k kept ones. The result differs from a fresh pass only by rounding
// (relative ~1e-16 of the per-example terms' sum), far below the solve's tolerance η ≥ 1e-12.
struct KeptGradient {
  std::vector<double> gradient;  // p values
  double objective = 0;
  int64_t examples = 0;
};

struct UnlearnOptions {
  UnlearnMethod method = UnlearnMethod::kNewton;
  int steps = 1;              // newton steps, or gradient-ascent steps
  // newton: stop after the first step that leaves ‖∇L₋ₛ‖ ≤ stationary_tolerance (`steps` is
  // then the most taken): `--steps auto`, so that a patch ends at the kept objective's
  // optimum when one step is not enough, and costs one step when it is.
  bool until_stationary = false;
  double stationary_tolerance = 1e-5;
  InverseHvpOptions inverse;  // newton: solver, curvature, damping λ (the starting damping)
  bool line_search = true;    // newton: backtrack on L₋ₛ (always on for non-convex safety)
  int max_damping_raises = 8;
  // cg: solve each Newton step only as accurately as it can matter (inexact Newton,
  // Eisenstat & Walker 1996): relative tolerance
  //   η_k = min(max_forcing, k/n, ‖∇L₋ₛ(θ_k)‖ / ‖∇L₋ₛ(θ_0)‖), floored at 1e-12,
  // instead of inverse.cg.relative_tolerance. Removing k of n examples moves θ by O(k/n),
  // and a Newton step's own relative error (the curvature changes along it) is of that
  // order too, so a first solve finer than k/n buys little; η_k = O(‖∇L₋ₛ(θ_k)‖) keeps
  // later steps quadratically convergent. Every term is free of the loss's scale.
  bool adaptive_cg_tolerance = true;
  double max_forcing = 1e-2;  // η's cap (measurements in docs/unlearning.md)
  // kAuto: a step solves in f32 when the objective's precision is finer and the step's
  // CG tolerance is at least f32_min_tolerance; a solve in f32 that breaks down (a
  // non-finite pᵀAp or rᵀM⁻¹r) is repeated in the compute precision.
  SolvePrecision solve_precision = SolvePrecision::kAuto;
  double f32_min_tolerance = 1e-4;
  double learning_rate = 0.01;  // gradient-ascent: η
  double kept_weight = 0.0;     // gradient-ascent: weight of the descent on kept data
  // newton: when set and carried->examples = kept + forget rows, the starting gradient is
  // carried (KeptGradient) instead of computed; when set, the final θ's is exported.
  const KeptGradient* carried = nullptr;
  KeptGradient* export_gradient = nullptr;
  void Validate() const;
};

struct UnlearnStep {
  SolveSummary solve;
  std::string solve_dtype;  // "f64" or "f32": the precision the solve ran in
  double damping = 0;       // λ actually used
  double step_length = 1;   // t of θ − t·d accepted (0: refused)
  double kept_objective_before = 0, kept_objective_after = 0;
  double kept_grad_norm_before = 0, kept_grad_norm_after = 0;
  std::string action;  // what the safeguards did, in words
};

struct UnlearnSummary {
  std::string method;
  std::vector<UnlearnStep> steps;
  double kept_grad_norm_before = 0, kept_grad_norm_after = 0;  // ‖∇L₋ₛ‖
  // ‖∇L(θ)‖ over all n examples at the input θ: its own training objective's gradient,
  // ((n−k)/n)·∇L₋ₛ + (k/n)·∇L_S from the two objectives (both carry (l2/2)‖θ‖²).
  double input_grad_norm = 0;
  double delta_norm = 0;  // ‖θ' − θ‖
  bool gradient_carried = false;  // the starting ∇L₋ₛ from UnlearnOptions::carried
  double seconds = 0;
  bool ok = true;  // false: a solve failed and nothing should be written
  std::string message;
};

// `kept` is the objective over the kept examples, `forget` over the forget set. θ (1 × p)
// is updated in place. `kept_f32`, optional, is the kept objective again in f32 (same
// rows, same order), for the steps that solve in f32 (SolvePrecision).
template <typename T>
UnlearnSummary Unlearn(Objective<T>& kept, Objective<T>& forget, kernels::Matrix<T> theta,
                       const UnlearnOptions& options, Objective<float>* kept_f32 = nullptr);

}  // namespace lethe
