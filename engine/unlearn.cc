#include "engine/unlearn.h"

#include <chrono>
#include <cmath>

#include "common/error.h"

namespace lethe {

const char* Name(UnlearnMethod m) {
  return m == UnlearnMethod::kNewton ? "newton" : "gradient-ascent";
}

UnlearnMethod ParseUnlearnMethod(const std::string& name) {
  if (name == "newton") return UnlearnMethod::kNewton;
  if (name == "gradient-ascent") return UnlearnMethod::kGradientAscent;
  Fail("--method ", name, ": unknown (known: newton, gradient-ascent)");
}

void UnlearnOptions::Validate() const {
  if (steps < 1) Fail("--steps = ", steps, ": must be >= 1");
  if (!(learning_rate > 0)) Fail("--learning-rate = ", learning_rate, ": must be > 0");
  if (!(kept_weight >= 0)) Fail("--kept-weight = ", kept_weight, ": must be >= 0");
  if (max_damping_raises < 0) Fail("max_damping_raises must be >= 0");
  inverse.Validate();
}

namespace {

template <typename T>
double GradNorm(Objective<T>& o, const kernels::Matrix<T>& theta, kernels::Matrix<T> grad,
                double* value) {
  *value = o.ValueAndGradient(theta, grad);
  return static_cast<double>(kernels::Norm(o.backend(), grad));
}

// One safeguarded Newton step (see unlearn.h).
template <typename T>
UnlearnStep NewtonStep(Objective<T>& kept, kernels::Matrix<T> theta, const UnlearnOptions& options,
                       kernels::Matrix<T> grad, kernels::Matrix<T> d, kernels::Matrix<T> trial) {
  kernels::Backend<T>& be = kept.backend();
  UnlearnStep step;
  step.kept_grad_norm_before = GradNorm(kept, theta, grad, &step.kept_objective_before);
  InverseHvpOptions inv = options.inverse;
  if (options.adaptive_cg_tolerance)
    inv.cg.relative_tolerance = std::max(1e-12, std::min(1e-4, step.kept_grad_norm_before));
  double lambda_max = -1;
  for (int raise = 0;; ++raise) {
    InverseHvp<T> inverse(kept, theta, inv);
    step.solve = inverse.Solve(grad, d);
    step.damping = inv.damping;
    if (step.solve.termination != Termination::kNegativeCurvature) break;
    if (raise == options.max_damping_raises) {
      step.action = "negative curvature persisted after raising the damping to " +
                    std::to_string(inv.damping);
      step.step_length = 0;
      return step;
    }
    const double mu = inverse.smallest_eigenvalue();
    if (std::isfinite(mu)) {
      inv.damping += 1.1 * std::abs(mu) + 1e-12;
    } else {
      if (lambda_max < 0) {
        CurvatureOperator<T> C(kept, theta, inv.curvature, 0.0);
        lambda_max = EstimateLargestEigenvalue(C, 20, 0);
      }
      inv.damping = std::max(10 * inv.damping, 1e-6 * std::abs(lambda_max));
    }
    step.action = "negative curvature: damping raised to " + std::to_string(inv.damping) + "; ";
  }
  if (!step.solve.converged() && step.solve.termination != Termination::kMaxIterations) {
    step.step_length = 0;
    step.action += std::string("solve ") + Name(step.solve.termination) + ": step refused";
    return step;
  }
  // Backtracking on L₋ₛ along −d: accept t when L₋ₛ(θ − t d) ≤ L₋ₛ(θ) − 1e-4·t·gᵀd (Armijo),
  // with a rounding allowance so a step at the optimum is not refused for noise.
  const double slope = static_cast<double>(be.Dot(grad, d));
  double t = 1;
  bool accepted = false;
  for (int k = 0; k < 30; ++k, t *= 0.5) {
    be.Copy(theta, trial);
    be.Axpby(T(-t), d, T(1), trial);
    const double f = kept.ValueAndGradient(trial, kernels::Matrix<T>());
    if (!options.line_search ||
        (std::isfinite(f) && f <= step.kept_objective_before - 1e-4 * t * slope +
                                       1e-14 * std::abs(step.kept_objective_before))) {
      accepted = true;
      break;
    }
  }
  if (!accepted) {
    step.step_length = 0;
    step.action += "no step length decreases the kept objective: step refused";
    step.kept_grad_norm_after = step.kept_grad_norm_before;
    step.kept_objective_after = step.kept_objective_before;
    return step;
  }
  be.Copy(trial, theta);
  step.step_length = t;
  step.action += t == 1 ? "full Newton step" : "line search: step length " + std::to_string(t);
  step.kept_grad_norm_after = GradNorm(kept, theta, grad, &step.kept_objective_after);
  return step;
}

}  // namespace

template <typename T>
UnlearnSummary Unlearn(Objective<T>& kept, Objective<T>& forget, kernels::Matrix<T> theta,
                       const UnlearnOptions& options) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  kernels::Backend<T>& be = kept.backend();
  const int64_t p = kept.num_params();
  UnlearnSummary s;
  s.method = Name(options.method);
  kernels::Matrix<T> original = be.Allocate(1, p), grad = be.Allocate(1, p);
  kernels::Matrix<T> d = be.Allocate(1, p), trial = be.Allocate(1, p);
  be.Copy(theta, original);
  double value;
  s.kept_grad_norm_before = GradNorm(kept, theta, grad, &value);

  if (options.method == UnlearnMethod::kNewton) {
    for (int k = 0; k < options.steps; ++k) {
      s.steps.push_back(NewtonStep(kept, theta, options, grad, d, trial));
      const UnlearnStep& step = s.steps.back();
      if (step.step_length == 0) {
        // The first step must succeed; a later refused step means no further progress.
        if (k == 0) {
          s.ok = false;
          s.message = step.action + " (" + step.solve.message + ")";
        }
        break;
      }
    }
  } else {
    // θ ← θ + η ∇ℓ_S − η·w·∇L₋ₛ
    kernels::Matrix<T> gf = be.Allocate(1, p);
    for (int k = 0; k < options.steps; ++k) {
      forget.ValueAndGradient(theta, gf);
      // ℓ_S is the mean forget loss: remove the l2 term the objective adds.
      be.Axpby(T(-forget.l2()), theta, T(1), gf);
      be.Axpby(T(options.learning_rate), gf, T(1), theta);
      if (options.kept_weight > 0) {
        kept.ValueAndGradient(theta, grad);
        be.Axpby(T(-options.learning_rate * options.kept_weight), grad, T(1), theta);
      }
    }
  }
  s.kept_grad_norm_after = GradNorm(kept, theta, grad, &value);
  be.Copy(theta, d);
  be.Axpby(T(-1), original, T(1), d);
  s.delta_norm = static_cast<double>(kernels::Norm(be, d));
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

template UnlearnSummary Unlearn<float>(Objective<float>&, Objective<float>&, kernels::Matrix<float>,
                                       const UnlearnOptions&);
template UnlearnSummary Unlearn<double>(Objective<double>&, Objective<double>&,
                                        kernels::Matrix<double>, const UnlearnOptions&);

}  // namespace lethe
