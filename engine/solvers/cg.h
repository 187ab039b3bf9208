// Conjugate gradient for A x = b, A symmetric positive definite, for m right-hand sides
// at once (the rows of B): m independent CG recurrences that share each application of
// A, i.e. one pass over the training data per iteration for all of them.
//
// Per right-hand side: r = b − A x, p = r; repeat
//   α = rᵀr / pᵀAp,  x += α p,  r −= α Ap,  β = r'ᵀr' / rᵀr,  p = r' + β p
// until ‖r‖ ≤ relative_tolerance · ‖b‖. pᵀAp ≤ 0 means A is not positive definite along
// p: the solve stops with termination = negative-curvature instead of returning a wrong x.
// Only the m scalars per step (rᵀr, pᵀAp) travel back to the host.
//
// With a preconditioner M⁻¹ (symmetric positive definite), the same recurrences run with
// z = M⁻¹ r in place of r where it is a direction: p = z, α = rᵀz / pᵀAp,
// β = r'ᵀz' / rᵀz, p = z' + β p. The stopping test stays on the true residual norm ‖r‖,
// so a preconditioned solve answers to the same tolerance as a plain one.
#pragma once

#include "common/progress.h"
#include "engine/solvers/linear_operator.h"
#include "engine/solvers/solve_summary.h"

namespace lethe {

struct CgOptions {
  // Stop when ‖A x − b‖ ≤ relative_tolerance · ‖b‖ for every right-hand side.
  double relative_tolerance = 1e-8;
  int max_iterations = 1000;  // one operator application (for all m) per iteration
  // Recompute ‖A x − b‖ explicitly at the end (one more application of A) and report it:
  // the recursive residual drifts from the true one in finite precision. Off only where the
  // caller checks the solution's effect itself (a Newton step under --steps auto, whose f64
  // gradient after the step decides): the residual is then reported as not computed.
  bool check_residual = true;
  // Reports phase "cg", done = iterations of max_iterations, once per iteration.
  ProgressSink* progress = nullptr;
  void Validate() const;  // throws lethe::Error naming the bad field
};

// X (m × p) holds the starting point on entry (zero for none) and the solution on exit.
// `preconditioner`, when given, applies M⁻¹.
template <typename T>
SolveSummary ConjugateGradient(LinearOperator<T>& A, const kernels::Matrix<T>& B,
                               kernels::Matrix<T> X, const CgOptions& options,
                               LinearOperator<T>* preconditioner = nullptr);

}  // namespace lethe
