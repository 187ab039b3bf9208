// A low-rank inverse of the curvature from its dominant eigenpairs, found by Lanczos.
//
// Lanczos (with full reorthogonalisation) builds an orthonormal basis Q (K × p, rows
// q_j) of the Krylov space span{q_1, A q_1, …, A^{K−1} q_1} in which A is tridiagonal:
//   A q_j = β_{j−1} q_{j−1} + α_j q_j + β_j q_{j+1},   T = Q A Qᵀ = tridiag(β, α, β).
// The eigenpairs T s = θ s give Ritz pairs (θ, v = Qᵀ s) of A; the extreme ones converge
// first. Keeping the `rank` of largest |θ| as the rows of V (rank × p), Λ = diag(θ):
//   A ≈ V Λ Vᵀ  (the rest of the spectrum taken as 0), and for damping λ
//   x = (A + λI)⁻¹ b ≈ V (Λ + λ)⁻¹ Vᵀ b + (1/λ)(b − V Vᵀ b)
//     = (1/λ) b + Vᵀ diag(1/(θ_r + λ) − 1/λ) V b.
// λ > 0 is required unless rank = p; at rank = p, K = p, V is an orthonormal basis of
// all of ℝᵖ and x is the exact solve. When the Krylov space closes early (repeated
// eigenvalues, e.g. the l2·I part on unused parameters) Lanczos restarts from a fresh
// random vector orthogonal to Q, so T stays block tridiagonal and full rank stays exact.
//
// Lanczos runs on the operator without damping; Q and V stay on the device (K and rank
// rows of p), only the K × K tridiagonal eigenproblem is solved on the host (Eigen).
// Cost: K operator applications, O(K² p) for the reorthogonalisation.
//
// What it can vouch for: at full rank the solve is exact up to rounding (termination
// converged). Below full rank x is an approximation whose error no iteration count
// controls: its residual is r = (A + λI)x − b ≈ (1/λ)·A(b − VVᵀb), the discarded spectrum
// divided by λ, which is ≫ 1 when λ is small against it (on the digits softmax regression
// rank 100 with λ = 1e-3 leaves ‖r‖/‖b‖ = 1.6e2). So a low-rank solve says converged only
// when its recomputed residual is ≤ relative_tolerance, and inexact otherwise — also when
// the residual was not computed.
#pragma once

#include <cstdint>
#include <vector>

#include "common/progress.h"
#include "engine/solvers/linear_operator.h"
#include "engine/solvers/solve_summary.h"

namespace lethe {

struct LanczosOptions {
  // Eigenpairs kept (largest |θ|); at most p. rank = p gives the exact solve.
  int64_t rank = 100;
  // Lanczos steps K (one operator application each); 0 = min(p, 2·rank + 10). More steps
  // than rank make the kept Ritz pairs accurate, not only the extreme ones. ≥ rank.
  int64_t iterations = 0;
  // λ: the solve is of (A + λI) x = b, A the operator given (without damping). Must be
  // > 0 unless rank = p (the discarded spectrum is taken as 0, so it is inverted as 1/λ).
  double damping = 0;
  // Below full rank: converged only when ‖(A + λI)x − b‖ ≤ relative_tolerance · ‖b‖ for
  // every right-hand side (recomputed); inexact otherwise. Full rank is exact (converged).
  double relative_tolerance = 1e-6;
  uint64_t seed = 0;  // starting vector and restarts
  // Reports phase "lanczos", one unit per Lanczos step (operator application), of K.
  ProgressSink* progress = nullptr;
  void Validate() const;  // throws lethe::Error naming the bad field
};

// Computed once, applied to any number of right-hand sides.
template <typename T>
class LanczosInverse {
 public:
  // Runs Lanczos on A (undamped). Returns termination = converged at full rank, inexact
  // below it (no right-hand side yet: Judge decides from the residual), or
  // negative-curvature when a kept eigenvalue has θ + λ ≤ 0 (then Solve must not be
  // called). Negative kept eigenvalues that λ covers are reported in the message. The
  // relative residual is NaN (not computed). Throws lethe::Error when rank or iterations
  // exceed p, or damping = 0 with rank < p.
  SolveSummary Compute(LinearOperator<T>& A, const LanczosOptions& options);

  bool ready() const { return ready_; }
  int64_t rank() const { return V_.rows(); }
  double damping() const { return damping_; }
  // V (rank × p): orthonormal rows, ordered by eigenvalue, largest first.
  const kernels::Matrix<T>& vectors() const { return V_; }
  const std::vector<double>& eigenvalues() const { return theta_; }
  // X (m × p) ≈ (A + λI)⁻¹ B row by row (the formula above). X must not alias B.
  void Solve(const kernels::Matrix<T>& B, kernels::Matrix<T> X) const;
  bool full_rank() const { return full_rank_; }
  // The termination of a solve whose summary (a copy of Compute's) holds the recomputed
  // residuals: below full rank converged when they are ≤ tolerance, else inexact with
  // the reason in the message. Full rank and negative-curvature are left as they are.
  void Judge(SolveSummary* summary) const;

 private:
  kernels::Backend<T>* backend_ = nullptr;
  kernels::Matrix<T> V_, W_;  // W = diag(1/(θ_r + λ) − 1/λ) V  (1/(θ_r + λ) at full rank)
  std::vector<double> theta_;
  double damping_ = 0, tolerance_ = 0;
  bool full_rank_ = false, ready_ = false;
};

// LanczosInverse for one set of right-hand sides; the relative residual is that of the
// damped system, recomputed with A. On negative-curvature X is set to zero.
template <typename T>
SolveSummary LanczosSolve(LinearOperator<T>& A, const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                          const LanczosOptions& options);

// The largest eigenvalue of A from `iterations` Lanczos steps: the largest Ritz value,
// a lower bound that converges from below (much faster than power iteration: the error
// falls like exp(−4K·√gap) rather than (1 − gap)^K for relative gap `gap`).
//
// With a preconditioner M⁻¹ (symmetric positive definite, M = L Lᵀ), the largest
// eigenvalue of M⁻¹A. M⁻¹A is not symmetric, but it is similar to the symmetric
// L⁻¹ A L⁻ᵀ, whose Lanczos vectors y_j are carried as z_j = L y_j and u_j = L⁻ᵀ y_j =
// M⁻¹ z_j without ever forming L:
//   w = A u_j,  α_j = u_jᵀ w,  w −= α_j z_j + β_{j−1} z_{j−1},  t = M⁻¹ w,
//   β_j = √(wᵀ t),  z_{j+1} = w / β_j,  u_{j+1} = t / β_j
// (yᵀy' = zᵀ M⁻¹ z': orthogonality in the M⁻¹ inner product, restored against all earlier
// z by w −= (w Uᵀ) Z, twice). One application of A and of M⁻¹ per step.
template <typename T>
double EstimateLargestEigenvalue(LinearOperator<T>& A, int iterations, uint64_t seed,
                                 LinearOperator<T>* preconditioner = nullptr);

}  // namespace lethe
