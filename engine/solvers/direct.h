// The exact solve for small models: form A explicitly, factorise it once (Cholesky,
// A = L Lᵀ) and solve for any number of right-hand sides. Everything happens on A's
// backend (Eigen on the CPU, cuSOLVER potrf/potrs/syevd on the GPU) in its precision.
//
// A is formed block by block: A · [e_i … e_{i+k−1}] for k = block_size identity rows at
// a time, each product written straight into rows i … i+k−1 of the p × p matrix (A is
// symmetric), so the backend holds p² + k·p values (20000² · 8 B = 3.2 GB in f64 at the
// default max_params). Where the operator can write itself out (LinearOperator::FormDense,
// DirectOptions::dense_form) that replaces the products, and is exactly symmetric already.
// Formed from products, A is symmetrised, (A + Aᵀ)/2, to remove their rounding asymmetry
// before Cholesky. When A is not positive definite the smallest eigenvalue μ is reported (A
// is formed again for it): A + |μ|·I is singular and any damping above |μ| makes it
// positive definite.
//
// Cost: p operator applications (p/k passes over the data with k vectors each) or the
// operator's dense form,
// p³/3 flops for the factorisation, 2p² per right-hand side.
#pragma once

#include <cstdint>
#include <memory>

#include "common/progress.h"
#include "engine/solvers/linear_operator.h"
#include "engine/solvers/solve_summary.h"

namespace lethe {

struct DirectOptions {
  // Identity rows the operator is applied to at once while forming A (block_size × p
  // values on the backend besides A).
  int64_t block_size = 256;
  // Refuse to form A for more parameters than this (backend memory ≈ sizeof(T)·p² bytes).
  int64_t max_params = 20000;
  // Reports phase "forming the curvature matrix", done = columns formed of p.
  ProgressSink* progress = nullptr;
  // Form A by the operator's own dense form where it offers one (LinearOperator::FormDense:
  // a linear model's curvature from C(C+1)/2 weighted Gram matrices, ~10× fewer flops than
  // p products), else from p applications. false: always from applications.
  bool dense_form = true;
  void Validate() const;  // throws lethe::Error naming the bad field
};

// A factorised once and solved against many right-hand sides, e.g. all n per-example
// training gradients for self-influence. Holds the Cholesky factor on A's backend.
template <typename T>
class DirectFactorization {
 public:
  DirectFactorization();
  ~DirectFactorization();
  DirectFactorization(DirectFactorization&&) noexcept;
  DirectFactorization& operator=(DirectFactorization&&) noexcept;

  // Forms and factorises A. Returns termination = converged, or negative-curvature with
  // the smallest eigenvalue in the message (and in smallest_eigenvalue()); then Solve
  // must not be called. Throws lethe::Error when A.size() > options.max_params.
  SolveSummary Factorize(LinearOperator<T>& A, const DirectOptions& options);

  bool factorized() const;
  int64_t size() const;
  // NaN unless Factorize found A not positive definite.
  double smallest_eigenvalue() const;
  // X (m × p) = A⁻¹ B for the rows of B (m × p), on the backend A lived on. X may alias B.
  void Solve(const kernels::Matrix<T>& B, kernels::Matrix<T> X) const;
  // The factor L (p × p on the backend; its lower triangle is L) after a successful
  // Factorize, and the reverse: a factor an earlier Factorize produced (kept on disk by a
  // caller) adopted as this one's, on `backend`.
  const kernels::Matrix<T>& factor() const;
  void Adopt(kernels::Backend<T>& backend, kernels::Matrix<T> factor);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Solves A X = B (rows of B are right-hand sides) by DirectFactorization. On
// negative-curvature X is set to zero (relative residual 1).
template <typename T>
SolveSummary DirectSolve(LinearOperator<T>& A, const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                         const DirectOptions& options);

// Fills summary->relative_residual(s) with ‖(A + damping·I) x − b‖ / ‖b‖ per row,
// recomputed with one application of A (‖A x − b‖ itself when b = 0). Every solver
// reports this true residual, never a recursively updated one.
template <typename T>
void RecomputeResiduals(LinearOperator<T>& A, double damping, const kernels::Matrix<T>& B,
                        const kernels::Matrix<T>& X, SolveSummary* summary);

}  // namespace lethe
