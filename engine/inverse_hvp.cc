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
    case PreconditionerKind::kDense:
      return "dense";
  }
  return "?";
}

PreconditionerKind ParsePreconditioner(const std::string& name) {
  for (PreconditionerKind k : {PreconditionerKind::kAuto, PreconditionerKind::kNone,
                               PreconditionerKind::kKfac, PreconditionerKind::kDense})
    if (name == Name(k)) return k;
  Fail("--preconditioner ", name, ": unknown (known: auto, kfac, dense, none)");
}

PreconditionerKind ResolvePreconditioner(PreconditionerKind k, const Architecture& arch) {
  if (k != PreconditionerKind::kAuto) return k;
  // K-FAC is exact for one linear layer (softmax regression); with any other trainable layer
  // (an embedding table, which has no block) it is not.
  int linear = 0, trainable = 0;
  for (const LayerShape& layer : arch.layers) {
    linear += layer.type() == "linear" && layer.num_params() > 0;
    trainable += layer.num_params() > 0;
  }
  return linear == 1 && trainable == 1 ? PreconditionerKind::kKfac : PreconditionerKind::kNone;
}

SolverKind DefaultSolver(int64_t num_params) {
  return num_params <= 20000 ? SolverKind::kDirect : SolverKind::kCg;
}

void InverseHvpOptions::Validate() const {
  if (!(damping >= 0)) Fail("--damping = ", damping, ": must be >= 0");
  kfac.Validate();
  dense.Validate();
  direct.Validate();
  cg.Validate();
  lissa.Validate();
  lanczos.Validate();
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
LinearOperator<T>* InverseHvp<T>::Preconditioner(double* setup_seconds, std::string* name) {
  *setup_seconds = 0;
  const PreconditionerKind kind = ResolvePreconditioner(options_.preconditioner, objective_.arch());
  if (kind == PreconditionerKind::kDense) {
    if (!dense_used_) {
      // Built at this θ (the cost of a direct solve's setup, counted in the first solve's
      // time), or the store's, built by an earlier request of the same process.
      bool built = true;
      if (options_.dense_store) {
        dense_used_ = options_.dense_store->Get(objective_, theta_, options_.curvature,
                                                options_.damping, options_.dense, &built);
      } else {
        dense_ = std::make_unique<DensePreconditioner<T>>(objective_, theta_, options_.curvature,
                                                          options_.damping, options_.dense);
        dense_used_ = dense_.get();
      }
      dense_reused_ = !built;
      if (built) *setup_seconds = dense_used_->setup_seconds();
    }
    *name = dense_reused_ ? "dense (reused)" : "dense";
    return dense_used_;
  }
  if (kind != PreconditionerKind::kKfac) return nullptr;
  if (!kfac_) {
    // About one pass over (part of) the data, once per (objective, θ); its setup time is
    // counted in the first solve's.
    kfac_reused_ = options_.kfac_reuse && options_.kfac_reuse->Fits(objective_, options_.damping);
    if (kfac_reused_)
      kfac_ = std::make_unique<KfacPreconditioner<T>>(objective_, *options_.kfac_reuse);
    else
      kfac_ = std::make_unique<KfacPreconditioner<T>>(objective_, theta_, options_.damping,
                                                      options_.kfac);
    *setup_seconds = kfac_->setup_seconds();
    if (options_.kfac_export) *options_.kfac_export = kfac_->State(options_.damping, objective_.l2());
  }
  *name = kfac_reused_ ? "kfac (cached)" : "kfac";
  return kfac_.get();
}

template <typename T>
SolveSummary InverseHvp<T>::Solve(const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                                  bool check_residual) {
  SolveSummary s;
  switch (options_.solver) {
    case SolverKind::kDirect:
      if (!direct_) {
        direct_ = std::make_unique<DirectFactorization<T>>();
        DirectOptions o = options_.direct;
        o.progress = options_.progress;
        setup_ = direct_->Factorize(damped_, o);
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
        o.progress = options_.progress;
        setup_ = lanczos_->Compute(undamped_, o);
      }
      s = setup_;
      if (!lanczos_->ready()) return s;
      lanczos_->Solve(B, X);
      if (check_residual) RecomputeResiduals(undamped_, options_.damping, B, X, &s);
      lanczos_->Judge(&s);
      return s;
    case SolverKind::kCg: {
      double setup = 0;
      std::string name;
      LinearOperator<T>* M = Preconditioner(&setup, &name);
      CgOptions o = options_.cg;
      o.progress = options_.progress;
      objective_.backend().Fill(X, T(0));
      s = ConjugateGradient(damped_, B, X, o, M);
      s.seconds += setup;
      s.setup_seconds = setup;
      if (M) s.preconditioner = name;
      return s;
    }
    case SolverKind::kLissa: {
      if (!minibatch_)
        minibatch_ = std::make_unique<MinibatchCurvatureOperator<T>>(
            objective_, theta_, options_.curvature, options_.damping, options_.lissa.seed);
      double setup = 0;
      std::string name;
      LinearOperator<T>* M = Preconditioner(&setup, &name);
      LissaOptions o = options_.lissa;
      o.progress = options_.progress;
      s = Lissa(*minibatch_, B, X, o, M);
      s.seconds += setup;
      s.setup_seconds = setup;
      return s;
    }
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
