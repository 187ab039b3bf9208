// Inverse curvature-vector products x = (C + λI)⁻¹ b, C the Hessian or Gauss-Newton
// matrix of the training objective at θ, by the solver the user picks. One object per
// (objective, θ): the direct factorisation or the Lanczos basis is computed on the first
// Solve and reused for every later right-hand side (all test examples, all n training
// gradients for self-influence).
#pragma once

#include <memory>
#include <string>

#include "common/progress.h"
#include "engine/dense_preconditioner.h"
#include "engine/kfac_preconditioner.h"
#include "engine/objective.h"
#include "engine/solvers/cg.h"
#include "engine/solvers/direct.h"
#include "engine/solvers/lanczos.h"
#include "engine/solvers/lissa.h"

namespace lethe {

enum class SolverKind { kDirect, kCg, kLissa, kLanczos };
const char* Name(SolverKind s);
SolverKind ParseSolver(const std::string& name);  // throws lethe::Error

// What CG and LiSSA are preconditioned with: nothing, or the Kronecker-factored
// approximation of the curvature's layer blocks (engine/kfac_preconditioner.h). auto: kfac
// for a model with one linear layer (softmax / logistic / linear regression), none
// otherwise. Measured on
// digits784 (docs/performance.md): K-FAC cuts a softmax regression's CG iterations 3× (there
// its only approximation is E[A ⊗ ããᵀ] ≈ E[A] ⊗ E[ããᵀ]), but doubles those of a 784-256-10
// MLP: its Gauss-Newton matrix has rank ≤ n · outputs, far below p, and the full-rank
// block-diagonal Kronecker products misplace curvature in its null space.
// dense: the exact curvature at the first θ it is used at, factorised
// (engine/dense_preconditioner.h): 1–3 iterations, but a p × p factor built at the cost of
// a direct solve; never chosen by auto for one solve, only by a stream served in one
// process (lethe unlearn --requests), where it is reused.
enum class PreconditionerKind { kAuto, kNone, kKfac, kDense };
const char* Name(PreconditionerKind k);
PreconditionerKind ParsePreconditioner(const std::string& name);  // throws lethe::Error
// kAuto made concrete for this model.
PreconditionerKind ResolvePreconditioner(PreconditionerKind k, const Architecture& arch);

struct InverseHvpOptions {
  SolverKind solver = SolverKind::kDirect;
  Curvature curvature = Curvature::kHessian;
  double damping = 0;  // λ ≥ 0
  DirectOptions direct;
  CgOptions cg;
  PreconditionerKind preconditioner = PreconditionerKind::kAuto;  // cg and lissa
  KfacOptions kfac;
  LissaOptions lissa;
  LanczosOptions lanczos;  // its damping field is ignored: λ above is used
  // Given to the solver that runs (the `progress` fields of the solver options above are
  // ignored): its phases and units are the solver's.
  ProgressSink* progress = nullptr;
  // A stream of requests (tools/lethe/stream_cache.h): use this saved K-FAC preconditioner
  // instead of building one, when it Fits the objective and λ; and/or copy the one used
  // (saved or built) here. Either may be null.
  const KfacState* kfac_reuse = nullptr;
  KfacState* kfac_export = nullptr;
  // dense: its memory bound; and, when set, the store that keeps it across the requests of
  // one process (built there on first use, reused while it fits), else one per InverseHvp.
  DensePreconditionerOptions dense;
  DensePreconditionerStore* dense_store = nullptr;
  void Validate() const;
};

// direct where p ≤ 20,000 (forming H costs p HVPs, or a few Gram products for a model with
// one linear layer, and 8p² bytes), else cg.
SolverKind DefaultSolver(int64_t num_params);

template <typename T>
class InverseHvp {
 public:
  InverseHvp(Objective<T>& objective, kernels::Matrix<T> theta, const InverseHvpOptions& options);
  ~InverseHvp();

  // X (m × p) = (C + λI)⁻¹ B for the rows of B. The summary carries the solver's
  // termination and the true relative residual ‖(C + λI)x − b‖/‖b‖ of every row (one
  // extra operator application), unless check_residual is false (bulk solves with the
  // direct or Lanczos solver: then the residual is NaN, not computed, and a low-rank
  // Lanczos solve is inexact since nothing vouches for it; CG and LiSSA always compute it).
  SolveSummary Solve(const kernels::Matrix<T>& B, kernels::Matrix<T> X, bool check_residual = true);

  const InverseHvpOptions& options() const { return options_; }
  // The smallest eigenvalue of C + λI when the direct solver found it not positive
  // definite; NaN otherwise.
  double smallest_eigenvalue() const;

 private:
  Objective<T>& objective_;
  kernels::Matrix<T> theta_;
  InverseHvpOptions options_;
  CurvatureOperator<T> damped_, undamped_;
  std::unique_ptr<MinibatchCurvatureOperator<T>> minibatch_;
  std::unique_ptr<DirectFactorization<T>> direct_;
  std::unique_ptr<LanczosInverse<T>> lanczos_;
  std::unique_ptr<KfacPreconditioner<T>> kfac_;
  bool kfac_reused_ = false;  // kfac_ came from options_.kfac_reuse
  std::unique_ptr<DensePreconditioner<T>> dense_;  // dense without a store
  DensePreconditioner<T>* dense_used_ = nullptr;   // the one in use (own or the store's)
  bool dense_reused_ = false;                      // from the store, built by an earlier solve
  SolveSummary setup_;  // of the factorisation / Lanczos run
  // The K-FAC or dense preconditioner when options_.preconditioner resolves to one (built
  // on first use, its setup seconds returned once), else null; *name is what the solve
  // summary calls it.
  LinearOperator<T>* Preconditioner(double* setup_seconds, std::string* name);
};

}  // namespace lethe
