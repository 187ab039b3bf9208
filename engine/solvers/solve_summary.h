// What a linear solve did: returned, never thrown (a numerical outcome is a result).
//
// Termination says what the solver can vouch for, never more:
//   converged           its stopping test on the true residual ‖(A + λI)x − b‖ ≤ tol·‖b‖
//                       passed (CG, LiSSA), or the method is exact up to rounding (the
//                       direct solve, full-rank Lanczos);
//   max-iterations      an iterative solver ran out of iterations (CG) or depth (LiSSA)
//                       above its tolerance: x is its last iterate;
//   inexact             an approximation with no iterations left to run (low-rank Lanczos)
//                       whose residual is above its tolerance, or was not computed;
//   negative-curvature  the operator is not positive definite: there is no answer;
//   diverged            the iteration blew up (non-finite values, growing residual).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace lethe {

enum class Termination { kConverged, kMaxIterations, kInexact, kNegativeCurvature, kDiverged };

inline const char* Name(Termination t) {
  switch (t) {
    case Termination::kConverged: return "converged";
    case Termination::kMaxIterations: return "max-iterations";
    case Termination::kInexact: return "inexact";
    case Termination::kNegativeCurvature: return "negative-curvature";
    case Termination::kDiverged: return "diverged";
  }
  return "?";
}

struct SolveSummary {
  std::string solver;
  std::string preconditioner;  // cg, lissa: "kfac" or empty for none
  Termination termination = Termination::kConverged;
  int iterations = 0;
  // max over right-hand sides of ‖A x − b‖ / ‖b‖, recomputed explicitly at the end; NaN
  // when it was not computed (a failed factorisation, a bulk solve without the check) or
  // when x or A x is not finite
  double relative_residual = std::nan("");
  std::vector<double> relative_residuals;  // one per right-hand side; empty: not computed
  // cg: the iterations each right-hand side took until it stopped (converged or failed);
  // the solve's own `iterations` is their maximum. Empty for the other solvers.
  std::vector<int> rhs_iterations;
  double seconds = 0;
  double setup_seconds = 0;  // of `seconds`: building the preconditioner (cg, lissa)
  std::string message;
  bool converged() const { return termination == Termination::kConverged; }
  bool residual_computed() const { return !relative_residuals.empty(); }
};

// The summary of solves over consecutive blocks of right-hand sides, `part` the next block's
// (first: the first block's): the worst termination and residual, the most iterations, the
// per-right-hand-side lists in order, and the seconds summed.
inline void MergeBlockSummary(const SolveSummary& part, SolveSummary* total, bool first) {
  if (first) {
    *total = part;
    return;
  }
  total->iterations = std::max(total->iterations, part.iterations);
  total->relative_residual = std::max(total->relative_residual, part.relative_residual);
  total->relative_residuals.insert(total->relative_residuals.end(),
                                   part.relative_residuals.begin(), part.relative_residuals.end());
  total->rhs_iterations.insert(total->rhs_iterations.end(), part.rhs_iterations.begin(),
                               part.rhs_iterations.end());
  total->seconds += part.seconds;
  if (part.termination != Termination::kConverged && total->converged()) {
    total->termination = part.termination;
    total->message = part.message;
  }
}

}  // namespace lethe
