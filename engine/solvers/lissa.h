// LiSSA: the stochastic Neumann-series estimate of A⁻¹ b (Agarwal, Bullins & Hazan 2017;
// Koh & Liang 2017). For 0 < A ≤ s·I,
//   A⁻¹ = (1/s) Σ_{j≥0} (I − A/s)^j,
// truncated at `depth` terms by the recursion
//   h_0 = b,   h_j = b + (I − A_j/s) h_{j−1},   x ≈ h_depth / s,
// where A_j is the operator on the j-th random minibatch (E[A_j] = A). With A_j = A this
// is Richardson iteration: x_J = A⁻¹ (I − (I − A/s)^{J+1}) b, so the error along an
// eigenvector with eigenvalue μ shrinks like (1 − μ/s)^J; the stochastic version is an
// unbiased estimate of that iterate, whose variance `repeats` independent runs average.
// The series converges when every A_j has its spectrum in (0, 2s); s = 1.1·λ_max(A) by
// default, λ_max from a few Lanczos steps.
//
// Divergence: while each A_j has spectrum in [0, 2s], ‖I − A_j/s‖ ≤ 1 and so
// ‖h_j‖ ≤ (j + 1)‖b‖. Growth well beyond that (or a NaN) means the scale is too small
// for some minibatch (or the curvature is indefinite): the solve stops with
// termination = diverged rather than returning noise.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/objective.h"
#include "engine/solvers/linear_operator.h"
#include "engine/solvers/solve_summary.h"

namespace lethe {

// A LinearOperator that is an average over training examples, A = (1/n) Σᵢ Aᵢ (+ terms
// common to all), and can also be applied on a contiguous range of them. The examples
// are in a fixed random order, so a range is a random minibatch.
template <typename T>
class StochasticOperator : public LinearOperator<T> {
 public:
  virtual int64_t num_examples() const = 0;
  // out (m × p) = A_batch V with A_batch = (1/count) Σ_{i ∈ [begin, begin+count)} Aᵢ
  // (+ the common terms): the same operator restricted to that minibatch.
  virtual void ApplyBatch(const kernels::Matrix<T>& V, kernels::Matrix<T> out, int64_t begin,
                          int64_t count) = 0;
};

// (C + damping · I), C the Hessian or Gauss-Newton matrix of `objective` at θ, as a
// StochasticOperator: the minibatch curvature is that of (1/count) Σ lᵢ + (l2/2)‖θ‖²
// over a copy of the training data shuffled once by `seed` (Backend::GatherRows), so
// contiguous ranges are random minibatches even when the file is sorted by class.
template <typename T>
class MinibatchCurvatureOperator final : public StochasticOperator<T> {
 public:
  MinibatchCurvatureOperator(Objective<T>& objective, kernels::Matrix<T> theta,
                             Curvature curvature, double damping, uint64_t seed);
  ~MinibatchCurvatureOperator() override;
  int64_t size() const override { return objective_.num_params(); }
  int64_t num_examples() const override { return objective_.num_examples(); }
  kernels::Backend<T>& backend() const override { return objective_.backend(); }
  void Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) override;
  void ApplyBatch(const kernels::Matrix<T>& V, kernels::Matrix<T> out, int64_t begin,
                  int64_t count) override;

 private:
  Objective<T>& objective_;
  std::unique_ptr<Objective<T>> shuffled_;
  kernels::Matrix<T> theta_;
  Curvature curvature_;
  double damping_;
};

struct LissaOptions {
  // Recursion steps J per repeat; each applies A to one minibatch for all m right-hand
  // sides. The bias along eigenvalue μ is (1 − μ/s)^J.
  int depth = 300;
  // Independent recursions averaged (each with its own minibatches); the variance of the
  // estimate falls like 1/repeats. With batch_size ≥ n the recursion is deterministic
  // and runs once.
  int repeats = 2;
  // Examples per minibatch (clamped to n). Larger batches cut the variance per step;
  // the cost of a step is proportional to the batch.
  int64_t batch_size = 512;
  // s in the recursion; 0 = automatic, 1.1 × the largest eigenvalue of A estimated by
  // `scale_iterations` Lanczos steps on the full operator. Must exceed λ_max/2 (ideally
  // λ_max of every minibatch); too small and the recursion diverges.
  double scale = 0;
  int scale_iterations = 20;
  uint64_t seed = 0;  // minibatch sequence (and the Lanczos start vector)
  void Validate() const;  // throws lethe::Error naming the bad field
};

// X (m × p) receives the estimate of A⁻¹ B row by row. The summary's relative residual
// is recomputed with the full operator. termination = converged after the full depth
// (LiSSA has no stopping test: the residual says how good the estimate is), diverged
// when the recursion blows up, negative-curvature when automatic scaling finds
// λ_max ≤ 0.
template <typename T>
SolveSummary Lissa(StochasticOperator<T>& A, const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                   const LissaOptions& options);

}  // namespace lethe
