#include "engine/inverse_hvp.h"

#include <cmath>

#include "common/error.h"

namespace lethe {

const char* Name(SolverKind s) {
  switch (s) {
    case SolverKind::kDirect:
      return "direct";
    case SolverKind::kCg:
      return "cg";
    case SolverKind::kLissa:
      return "lissa";
    case SolverKind::kLanczos:
      return "lanczos";
  }
  return "?";
}

SolverKind ParseSolver(const std::string& name) {
  for (SolverKind s :
       {SolverKind::kDirect, SolverKind::kCg, SolverKind::kLissa, SolverKind::kLanczos})
    if (name == Name(s)) return s;
  Fail("--solver ", name, ": unknown (known: direct, cg, lissa, lanczos)");
}

const char* Name(PreconditionerKind k) {
  switch (k) {
    case PreconditionerKind::kAuto:
      return "auto";
    case PreconditionerKind::kNone:
      return "none";
    case PreconditionerKind::kKfac:
      return "kfac";
  }
  return "?";
}

PreconditionerKind ParsePreconditioner(const std::string& name) {
  for (PreconditionerKind k :
       {PreconditionerKind::kAuto, PreconditionerKind::kNone, PreconditionerKind::kKfac})
    if (name == Name(k)) return k;
  Fail("--preconditioner ", name, ": unknown (known: auto, kfac, none)");
}

PreconditionerKind ResolvePreconditioner(PreconditionerKind k, const Architecture& arch) {
  if (k != PreconditionerKind::kAuto) return k;
  int linear = 0;
  for (const LayerShape& layer : arch.layers) linear += layer.is_linear();
  return linear == 1 ? PreconditionerKind::kKfac : PreconditionerKind::kNone;
}

SolverKind DefaultSolver(int64_t num_params) {
  return num_params <= 20000 ? SolverKind::kDirect : SolverKind::kCg;
}

void InverseHvpOptions::Validate() const {
  if (!(damping >= 0)) Fail("--damping = ", damping, ": must be >= 0");
  kfac.Validate();
  direct.Validate();
  cg.Validate();
  lissa.Validate();
}

template <typename T>
InverseHvp<T>::InverseHvp(Objective<T>& objective, kernels::Matrix<T> theta,
                          const InverseHvpOptions& options)
    : objective_(objective),
      theta_(theta),
      options_(options),
      damped_(objective, theta, options.curvature, options.damping),
      undamped_(objective, theta, options.curvature, 0.0) {
  options_.Validate();
}

template <typename T>
InverseHvp<T>::~InverseHvp() = default;

template <typename T>
SolveSummary InverseHvp<T>::Solve(const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                                  bool check_residual) {
  SolveSummary s;
  switch (options_.solver) {
    case SolverKind::kDirect:
      if (!direct_) {
        direct_ = std::make_unique<DirectFactorization<T>>();
        setup_ = direct_->Factorize(damped_, options_.direct);
      }
      s = setup_;
      if (!direct_->factorized()) return s;
      direct_->Solve(B, X);
      if (check_residual) RecomputeResiduals(damped_, 0.0, B, X, &s);
      return s;
    case SolverKind::kLanczos:
      if (!lanczos_) {
        lanczos_ = std::make_unique<LanczosInverse<T>>();
        LanczosOptions o = options_.lanczos;
        o.damping = options_.damping;
        setup_ = lanczos_->Compute(undamped_, o);
      }
      s = setup_;
      if (!lanczos_->ready()) return s;
      lanczos_->Solve(B, X);
      if (check_residual) RecomputeResiduals(undamped_, options_.damping, B, X, &s);
      return s;
    case SolverKind::kCg: {
      // The preconditioner costs about one pass over the data, once per (objective, θ);
      // its setup time is counted in the first solve's.
      double setup = 0;
      const PreconditionerKind pc =
          ResolvePreconditioner(options_.preconditioner, objective_.arch());
      if (pc == PreconditionerKind::kKfac && !kfac_) {
        kfac_ = std::make_unique<KfacPreconditioner<T>>(objective_, theta_, options_.damping,
                                                        options_.kfac);
        setup = kfac_->setup_seconds();
      }
      objective_.backend().Fill(X, T(0));
      s = ConjugateGradient(damped_, B, X, options_.cg, kfac_.get());
      s.seconds += setup;
      s.setup_seconds = setup;
      if (kfac_) s.preconditioner = Name(pc);
      return s;
    }
    case SolverKind::kLissa:
      if (!minibatch_)
        minibatch_ = std::make_unique<MinibatchCurvatureOperator<T>>(
            objective_, theta_, options_.curvature, options_.damping, options_.lissa.seed);
      return Lissa(*minibatch_, B, X, options_.lissa);
  }
  return s;
}

template <typename T>
double InverseHvp<T>::smallest_eigenvalue() const {
  return direct_ ? direct_->smallest_eigenvalue() : std::nan("");
}

template class InverseHvp<float>;
template class InverseHvp<double>;

}  // namespace lethe
