#include "engine/unlearn.h"

#include <algorithm>
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

const char* Name(SolvePrecision p) {
  switch (p) {
    case SolvePrecision::kAuto:
      return "auto";
    case SolvePrecision::kF32:
      return "f32";
    case SolvePrecision::kF64:
      return "f64";
  }
  return "?";
}

SolvePrecision ParseSolvePrecision(const std::string& name) {
  for (SolvePrecision p : {SolvePrecision::kAuto, SolvePrecision::kF32, SolvePrecision::kF64})
    if (name == Name(p)) return p;
  Fail("--solve-dtype ", name, ": unknown (known: auto, f32, f64)");
}

void UnlearnOptions::Validate() const {
  if (steps < 1) Fail("--steps = ", steps, ": must be >= 1");
  if (until_stationary && !(stationary_tolerance > 0))
    Fail("stationary_tolerance = ", stationary_tolerance, ": must be > 0");
  if (!(learning_rate > 0)) Fail("--learning-rate = ", learning_rate, ": must be > 0");
  if (!(kept_weight >= 0)) Fail("--kept-weight = ", kept_weight, ": must be >= 0");
  if (max_damping_raises < 0) Fail("max_damping_raises must be >= 0");
  if (!(max_forcing > 0 && max_forcing < 1))
    Fail("max_forcing = ", max_forcing, ": must be in (0, 1)");
  if (!(f32_min_tolerance > 0)) Fail("f32_min_tolerance = ", f32_min_tolerance, ": must be > 0");
  inverse.Validate();
}

namespace {

template <typename T>
std::vector<double> ToHost(kernels::Backend<T>& be, const kernels::Matrix<T>& m) {
  std::vector<T> host(static_cast<size_t>(m.size()));
  be.Download(m, host.data());
  return std::vector<double>(host.begin(), host.end());
}

template <typename T>
void FromHost(kernels::Backend<T>& be, const std::vector<double>& values, kernels::Matrix<T> m) {
  const std::vector<T> host(values.begin(), values.end());
  be.Upload(host.data(), m);
}

// Solves (C + λI) d = g on `objective` at θ, raising λ on negative curvature (see
// unlearn.h). Fills step.solve, step.damping and step.action; false when the curvature
// stayed indefinite after every raise.
template <typename S>
bool SolveNewtonSystem(Objective<S>& objective, const kernels::Matrix<S>& theta,
                       const kernels::Matrix<S>& grad, kernels::Matrix<S> d, InverseHvpOptions inv,
                       int max_damping_raises, UnlearnStep& step) {
  double lambda_max = -1;
  for (int raise = 0;; ++raise) {
    InverseHvp<S> inverse(objective, theta, inv);
    step.solve = inverse.Solve(grad, d);
    step.damping = inv.damping;
    if (step.solve.termination != Termination::kNegativeCurvature) return true;
    if (raise == max_damping_raises) {
      step.action += "negative curvature persisted after raising the damping to " +
                     std::to_string(inv.damping);
      return false;
    }
    const double mu = inverse.smallest_eigenvalue();
    if (std::isfinite(mu)) {
      inv.damping += 1.1 * std::abs(mu) + 1e-12;
    } else {
      if (lambda_max < 0) {
        CurvatureOperator<S> C(objective, theta, inv.curvature, 0.0);
        lambda_max = EstimateLargestEigenvalue(C, 20, 0);
      }
      inv.damping = std::max(10 * inv.damping, 1e-6 * std::abs(lambda_max));
    }
    step.action = "negative curvature: damping raised to " + std::to_string(inv.damping) + "; ";
  }
}

// The state a Newton step starts from: θ's kept objective and gradient, computed once
// (by the previous step's line search, or before the first step).
struct Point {
  double objective = 0, grad_norm = 0;
};

// One safeguarded Newton step (see unlearn.h). On entry `grad` is ∇L₋ₛ(θ) and `at` its
// value and norm; on exit both describe the new θ. `forcing` is the step's CG tolerance
// when it is adaptive.
template <typename T>
UnlearnStep NewtonStep(Objective<T>& kept, Objective<float>* kept_f32, kernels::Matrix<T> theta,
                       const UnlearnOptions& options, double forcing, Point& at,
                       kernels::Matrix<T> grad, kernels::Matrix<T> d, kernels::Matrix<T> trial,
                       kernels::Matrix<T> trial_grad) {
  kernels::Backend<T>& be = kept.backend();
  UnlearnStep step;
  step.kept_objective_before = at.objective;
  step.kept_grad_norm_before = at.grad_norm;
  InverseHvpOptions inv = options.inverse;
  if (options.adaptive_cg_tolerance && inv.solver == SolverKind::kCg)
    inv.cg.relative_tolerance = forcing;
  // --steps auto judges each step by ‖∇L₋ₛ‖ after it, computed in the objective's precision
  // by the line search: CG's own check of its residual (one more pass) adds nothing to that.
  if (options.until_stationary) inv.cg.check_residual = false;
  const bool finer = sizeof(T) > sizeof(float);
  bool f32 = finer && kept_f32 &&
             (options.solve_precision == SolvePrecision::kF32 ||
              (options.solve_precision == SolvePrecision::kAuto && inv.solver == SolverKind::kCg &&
               inv.cg.relative_tolerance >= options.f32_min_tolerance));
  bool solved = false;
  if (f32) {
    // θ and g rounded to f32 (relative 6e-8, far below η); d back in T.
    kernels::Backend<float>& bf = kept_f32->backend();
    const int64_t p = kept.num_params();
    kernels::Matrix<float> theta_f = bf.Allocate(1, p), grad_f = bf.Allocate(1, p),
                           d_f = bf.Allocate(1, p);
    FromHost(bf, ToHost(be, theta), theta_f);
    FromHost(bf, ToHost(be, grad), grad_f);
    solved =
        SolveNewtonSystem(*kept_f32, theta_f, grad_f, d_f, inv, options.max_damping_raises, step);
    FromHost(be, ToHost(bf, d_f), d);
    // A breakdown (a non-finite pᵀAp or rᵀM⁻¹r) may be f32's range or rounding: the
    // compute precision tries again. (The iteration limit is the user's: it would bind
    // there too.)
    if (solved && step.solve.termination == Termination::kDiverged &&
        options.solve_precision == SolvePrecision::kAuto) {
      step.action += std::string("the f32 solve ended ") + Name(step.solve.termination) +
                     ": solved again in the compute precision; ";
      f32 = false;
    }
  }
  if (!f32) {
    solved = SolveNewtonSystem(kept, theta, grad, d, inv, options.max_damping_raises, step);
  }
  step.solve_dtype = f32 || !finer ? "f32" : "f64";
  auto refuse = [&](const std::string& why) {
    step.step_length = 0;
    step.action += why;
    step.kept_grad_norm_after = step.kept_grad_norm_before;
    step.kept_objective_after = step.kept_objective_before;
    return step;
  };
  if (!solved) return refuse("");
  if (!step.solve.converged() && step.solve.termination != Termination::kMaxIterations &&
      step.solve.termination != Termination::kInexact)
    return refuse(std::string("solve ") + Name(step.solve.termination) + ": step refused");
  // Backtracking on L₋ₛ along −d: accept t when L₋ₛ(θ − t d) ≤ L₋ₛ(θ) − 1e-4·t·gᵀd (Armijo),
  // with a rounding allowance so a step at the optimum is not refused for noise. Each trial
  // also takes the gradient: the accepted one is the next step's (one pass, not two).
  const double slope = static_cast<double>(be.Dot(grad, d));
  double t = 1, f = 0;
  bool accepted = false;
  for (int k = 0; k < 30; ++k, t *= 0.5) {
    be.Copy(theta, trial);
    be.Axpby(T(-t), d, T(1), trial);
    f = kept.ValueAndGradient(trial, trial_grad);
    if (!options.line_search || (std::isfinite(f) && f <= at.objective - 1e-4 * t * slope +
                                                              1e-14 * std::abs(at.objective))) {
      accepted = true;
      break;
    }
  }
  if (!accepted) return refuse("no step length decreases the kept objective: step refused");
  be.Copy(trial, theta);
  be.Copy(trial_grad, grad);
  at.objective = f;
  at.grad_norm = static_cast<double>(kernels::Norm(be, grad));
  step.step_length = t;
  step.action += t == 1 ? "full Newton step" : "line search: step length " + std::to_string(t);
  step.kept_objective_after = at.objective;
  step.kept_grad_norm_after = at.grad_norm;
  return step;
}

}  // namespace

template <typename T>
UnlearnSummary Unlearn(Objective<T>& kept, Objective<T>& forget, kernels::Matrix<T> theta,
                       const UnlearnOptions& options, Objective<float>* kept_f32) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  kernels::Backend<T>& be = kept.backend();
  const int64_t p = kept.num_params();
  LETHE_CHECK(forget.num_params() == p);
  LETHE_CHECK(!kept_f32 ||
              (kept_f32->num_params() == p && kept_f32->num_examples() == kept.num_examples()));
  UnlearnSummary s;
  s.method = Name(options.method);
  kernels::Matrix<T> original = be.Allocate(1, p), grad = be.Allocate(1, p);
  kernels::Matrix<T> d = be.Allocate(1, p), trial = be.Allocate(1, p);
  be.Copy(theta, original);
  Point at;
  // (Counts over every rank's rows when the objectives are distributed.)
  const double n_kept = static_cast<double>(kept.global_examples());
  const double n_all = n_kept + static_cast<double>(forget.global_examples());
  const double f_forget = forget.ValueAndGradient(theta, d);
  const KeptGradient* c = options.carried;
  if (options.method == UnlearnMethod::kNewton && c &&
      c->examples == kept.global_examples() + forget.global_examples() &&
      static_cast<int64_t>(c->gradient.size()) == p && n_kept > 0) {
    // ∇L₋ₛ = (n·∇L − k·∇L_S)/(n − k) from the carried ∇L over all n rows (unlearn.h).
    const std::vector<T> g(c->gradient.begin(), c->gradient.end());
    be.Upload(g.data(), grad);
    const double k = n_all - n_kept;
    be.Axpby(T(-k / n_kept), d, T(n_all / n_kept), grad);
    at.objective = (n_all * c->objective - k * f_forget) / n_kept;
    s.gradient_carried = true;
  } else {
    at.objective = kept.ValueAndGradient(theta, grad);
  }
  at.grad_norm = s.kept_grad_norm_before = static_cast<double>(kernels::Norm(be, grad));
  {
    // ∇L = ((n−k)/n)·∇L₋ₛ + (k/n)·∇L_S: the l2 terms are the same in both and their
    // weights sum to one.
    be.Copy(grad, trial);
    be.Axpby(T(1 - n_kept / n_all), d, T(n_kept / n_all), trial);
    s.input_grad_norm = static_cast<double>(kernels::Norm(be, trial));
  }

  if (options.method == UnlearnMethod::kNewton) {
    kernels::Matrix<T> trial_grad = be.Allocate(1, p);
    const double g0 = at.grad_norm;
    const double fraction = static_cast<double>(forget.global_examples()) /
                            static_cast<double>(forget.global_examples() + kept.global_examples());
    for (int k = 0; k < options.steps; ++k) {
      const double ratio = g0 > 0 ? at.grad_norm / g0 : 0.0;
      const double forcing = std::max(1e-12, std::min({options.max_forcing, fraction, ratio}));
      s.steps.push_back(
          NewtonStep(kept, kept_f32, theta, options, forcing, at, grad, d, trial, trial_grad));
      const UnlearnStep& step = s.steps.back();
      if (step.step_length == 0) {
        // The first step must succeed; a later refused step means no further progress.
        if (k == 0) {
          s.ok = false;
          s.message = step.action + " (" + step.solve.message + ")";
        }
        break;
      }
      if (options.until_stationary && at.grad_norm <= options.stationary_tolerance) break;
    }
    s.kept_grad_norm_after = at.grad_norm;
    if (options.export_gradient) {
      // ∇L₋ₛ at the final θ: the last accepted line-search trial's (or the start's).
      KeptGradient& e = *options.export_gradient;
      std::vector<T> g(static_cast<size_t>(p));
      be.Download(grad, g.data());
      e.gradient.assign(g.begin(), g.end());
      e.objective = at.objective;
      e.examples = kept.global_examples();
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
    kept.ValueAndGradient(theta, grad);
    s.kept_grad_norm_after = static_cast<double>(kernels::Norm(be, grad));
  }
  be.Copy(theta, d);
  be.Axpby(T(-1), original, T(1), d);
  s.delta_norm = static_cast<double>(kernels::Norm(be, d));
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

template UnlearnSummary Unlearn<float>(Objective<float>&, Objective<float>&, kernels::Matrix<float>,
                                       const UnlearnOptions&, Objective<float>*);
template UnlearnSummary Unlearn<double>(Objective<double>&, Objective<double>&,
                                        kernels::Matrix<double>, const UnlearnOptions&,
                                        Objective<float>*);

}  // namespace lethe
