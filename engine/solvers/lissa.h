// LiSSA: the stochastic Neumann-series estimate of A⁻¹ b (Agarwal, Bullins & Hazan 2017;
// Koh & Liang 2017), here with an optional preconditioner M⁻¹ (symmetric positive
// definite; the K-FAC one of engine/kfac_preconditioner.h). For 0 < M⁻¹A < 2s·I,
//   A⁻¹ = (1/s) Σ_{j≥0} (I − M⁻¹A/s)^j M⁻¹,
// truncated after `depth` operator applications by preconditioned Richardson iteration
//   x_0 = 0,   x_{j+1} = x_j + (1/s) M⁻¹ (b − A_j x_j),
// where A_j is the operator on the j-th random minibatch (E[A_j] = A). Without a
// preconditioner (M = I) this is the textbook recursion h_j = b + (I − A_j/s) h_{j−1},
// x = h_J/s, with h_j = s·x_{j+1}. With A_j = A the error e_j = x_j − A⁻¹b obeys
// e_{j+1} = (I − M⁻¹A/s) e_j: along an eigenvector of M⁻¹A with eigenvalue μ it shrinks
// like (1 − μ/s)^j. The series converges when every M⁻¹A_j has its spectrum in (0, 2s),
// i.e. s > λ_max(M⁻¹A)/2 (|1 − μ/s| < 1 is all it needs). The slow directions, small μ,
// decide the depth, ~ s/μ_min = κ(M⁻¹A)/1.8 steps per factor e: so the automatic
// s = 0.55·λ_max(M⁻¹A) — near Richardson's optimal step 2/(λ_max + λ_min) — and a
// preconditioner that makes κ(M⁻¹A) small. On image data κ(A) is in the 10⁴–10⁶ (blank
// pixels: only l2 left) and K-FAC removes most of it (docs/performance.md). λ_max(M⁻¹A)
// comes from a few Lanczos steps on the similar symmetric L⁻¹ A L⁻ᵀ (M = L Lᵀ; see
// EstimateLargestEigenvalue), on the full operator and on a few minibatches.
// The stochastic version is an unbiased estimate of the full-batch iterate, whose
// variance `repeats` independent runs average.
//
// The answer's quality: every step computes r_j = b − A_j x_j anyway. With full batches
// (A_j = A) that is the true residual, and the recursion stops as soon as
// ‖r_j‖ ≤ relative_tolerance · ‖b‖ for every right-hand side. In every case the residual
// of the returned x is recomputed with the full operator (one more application), and the
// summary says converged only when it is ≤ relative_tolerance; max-iterations otherwise.
//
// Divergence: with full batches ‖r_j‖_{M⁻¹} (= √(rᵀM⁻¹r)) never grows while
// s > λ_max/2, since L⁻¹r_{j+1} = (I − L⁻¹AL⁻ᵀ/s) L⁻¹r_j and that matrix has norm < 1;
// minibatch residuals are noisier. Growth beyond 10(j + 1)·‖b‖_{M⁻¹} (or a NaN) means the
// scale is too small for some minibatch (or the curvature is indefinite): the solve stops
// with termination = diverged rather than returning noise.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/progress.h"
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
// contiguous ranges are random minibatches even when the file is sorted by class. A
// distributed objective's minibatches are one process's (the permutation of the global
// rows), each rank's rows of a window summed and the ranks' sums reduced: the same
// operator as one process's up to the reduction's rounding.
template <typename T>
class MinibatchCurvatureOperator final : public StochasticOperator<T> {
 public:
  MinibatchCurvatureOperator(Objective<T>& objective, kernels::Matrix<T> theta, Curvature curvature,
                             double damping, uint64_t seed);
  ~MinibatchCurvatureOperator() override;
  int64_t size() const override { return objective_.num_params(); }
  // N: every rank's rows when the objective is distributed (minibatches are windows of the
  // global shuffled sequence, each rank contributing the rows it holds).
  int64_t num_examples() const override;
  kernels::Backend<T>& backend() const override { return objective_.backend(); }
  void Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) override;
  void ApplyBatch(const kernels::Matrix<T>& V, kernels::Matrix<T> out, int64_t begin,
                  int64_t count) override;

 private:
  Objective<T>& objective_;
  std::unique_ptr<Objective<T>> shuffled_;  // this rank's rows in shuffled order
  std::vector<int64_t> positions_;  // their positions in the global shuffled sequence
  kernels::Matrix<T> theta_;
  Curvature curvature_;
  double damping_;
};

// Defaults measured on digits784 (10,000 × 784 softmax regression at its optimum, p = 7,850,
// l2 = 1e-3; docs/performance.md), Spearman correlation of the influence scores of 5 single
// test points with exact (CG to 1e-10) ones: K-FAC-preconditioned full-batch LiSSA reaches
// relative residual 1e-2 in 101 steps, Spearman 0.9998 mean / 0.9995 worst (largest error
// 6e-3 of the largest score), and 1e-3 in 184 steps, 1.0000; preconditioned minibatches of
// 4,096 plateau at residual 0.54 and Spearman 0.963 (M⁻¹ amplifies the minibatch noise
// along its small eigenvalues); the former default (plain, depth 400 × batch 4,096, i.e.
// 164 passes over the data) 0.71–0.73. Hence full batches by default: deterministic, with
// a stopping test on the true residual, and fewer passes than before.
struct LissaOptions {
  // Recursion steps J per repeat; each applies A to one minibatch for all m right-hand
  // sides. The bias along eigenvalue μ of M⁻¹A is (1 − μ/s)^J. With full batches the
  // recursion stops earlier when it reaches relative_tolerance.
  int depth = 400;
  // Independent recursions averaged (each with its own minibatches); the variance of the
  // estimate falls like 1/repeats. With batch_size ≥ n the recursion is deterministic
  // and runs once.
  int repeats = 1;
  // Examples per minibatch (clamped to n); 0 = all n: deterministic Richardson iteration
  // that stops at relative_tolerance. With minibatches the bias depends on the depth alone,
  // the variance on batch_size · repeats; at equal cost a larger batch is better than more
  // repeats, and on digits full batches beat minibatches of 1024 at equal cost (the noise
  // of minibatches costs more correlation than the extra depth buys).
  int64_t batch_size = 0;
  // s in the recursion; 0 = automatic, 0.55 × the largest eigenvalue of M⁻¹A (and of a
  // few minibatch operators) estimated by `scale_iterations` Lanczos steps each. Must
  // exceed λ_max/2 of every M⁻¹A_j; too small and the recursion diverges.
  double scale = 0;
  int scale_iterations = 20;
  // converged only when the recomputed ‖A x − b‖ ≤ relative_tolerance · ‖b‖ for every
  // right-hand side (and, with full batches, the recursion stops there). 1e-2 ranks the
  // digits784 scores with Spearman ≥ 0.999 (1e-3: 1.0000 in 1.8× the steps).
  double relative_tolerance = 1e-2;
  uint64_t seed = 0;  // minibatch sequence (and the Lanczos start vector)
  // Reports phase "lissa", done = steps of depth × repeats, once per step.
  ProgressSink* progress = nullptr;
  void Validate() const;  // throws lethe::Error naming the bad field
};

// X (m × p) receives the estimate of A⁻¹ B row by row; `preconditioner`, when given,
// applies M⁻¹. The summary's relative residual is recomputed with the full operator.
// termination = converged when it is ≤ options.relative_tolerance, max-iterations when
// not, diverged when the recursion blows up, negative-curvature when automatic scaling
// finds λ_max ≤ 0.
template <typename T>
SolveSummary Lissa(StochasticOperator<T>& A, const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                   const LissaOptions& options, LinearOperator<T>* preconditioner = nullptr);

}  // namespace lethe
