#include "engine/solvers/lissa.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "common/error.h"
#include "engine/solvers/direct.h"
#include "engine/solvers/lanczos.h"

namespace lethe {

void LissaOptions::Validate() const {
  if (depth < 1) Fail("LissaOptions::depth = ", depth, ": must be >= 1");
  if (repeats < 1) Fail("LissaOptions::repeats = ", repeats, ": must be >= 1");
  if (batch_size < 0)
    Fail("LissaOptions::batch_size = ", batch_size, ": must be >= 1, or 0 for all examples");
  if (!(scale >= 0) || !std::isfinite(scale))
    Fail("LissaOptions::scale = ", scale, ": must be > 0, or 0 for automatic");
  if (scale_iterations < 1)
    Fail("LissaOptions::scale_iterations = ", scale_iterations, ": must be >= 1");
  if (!(relative_tolerance > 0))
    Fail("LissaOptions::relative_tolerance = ", relative_tolerance, ": must be > 0");
}

template <typename T>
MinibatchCurvatureOperator<T>::MinibatchCurvatureOperator(Objective<T>& objective,
                                                          kernels::Matrix<T> theta,
                                                          Curvature curvature, double damping,
                                                          uint64_t seed)
    : objective_(objective), theta_(theta), curvature_(curvature), damping_(damping) {
  // Fisher-Yates with the raw 64-bit draws: the same order on every platform
  // (std::shuffle's use of the generator is implementation-defined). Distributed, the
  // permutation is of the N global rows, drawn identically on every rank, so the shuffled
  // sequence (and every minibatch, a window of it) is one process's; each rank keeps the
  // positions of the shuffled sequence that hold rows of its block, in increasing order.
  const int64_t N = objective.global_examples(), n = objective.num_examples();
  const int64_t offset = objective.row_offset();
  std::vector<int64_t> order(N);
  for (int64_t i = 0; i < N; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = N - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  std::vector<int64_t> local;  // this rank's rows, in shuffled order
  local.reserve(n);
  positions_.reserve(n);
  for (int64_t q = 0; q < N; ++q)
    if (order[q] >= offset && order[q] < offset + n) {
      positions_.push_back(q);
      local.push_back(order[q] - offset);
    }
  LETHE_CHECK(static_cast<int64_t>(local.size()) == n);
  kernels::Backend<T>& be = objective.backend();
  const DeviceData<T>& data = objective.data();
  if (data.streamed())
    Fail("--solver lissa shuffles a copy of the whole training data: not with the data "
         "streamed (--max-memory); use --solver cg");
  DeviceData<T> shuffled;
  shuffled.X = be.Allocate(n, data.X.cols());
  shuffled.Y = be.Allocate(n, data.Y.cols());
  be.GatherRows(data.X, local.data(), shuffled.X);
  be.GatherRows(data.Y, local.data(), shuffled.Y);
  shuffled_ = std::make_unique<Objective<T>>(be, objective.arch(), shuffled, objective.options());
  // Collective, as every rank builds its operator at the same point of the same solve.
  if (objective.distributed()) shuffled_->Distribute(*objective.communicator());
}

template <typename T>
MinibatchCurvatureOperator<T>::~MinibatchCurvatureOperator() = default;

template <typename T>
int64_t MinibatchCurvatureOperator<T>::num_examples() const {
  return objective_.global_examples();
}

template <typename T>
void MinibatchCurvatureOperator<T>::Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) {
  objective_.CurvatureProduct(curvature_, theta_, V, out);
  if (damping_ != 0) objective_.backend().Axpby(T(damping_), V, T(1), out);
}

template <typename T>
void MinibatchCurvatureOperator<T>::ApplyBatch(const kernels::Matrix<T>& V, kernels::Matrix<T> out,
                                               int64_t begin, int64_t count) {
  // The full batch: the whole objective (summed over every rank's rows when distributed).
  if (begin == 0 && count == num_examples() && objective_.distributed()) {
    Apply(V, out);
    return;
  }
  if (!objective_.distributed()) {
    shuffled_->CurvatureProductRows(curvature_, theta_, V, out, begin, count);
  } else {
    // Positions [begin, begin + count) of the global shuffled sequence: this rank's share
    // is the contiguous run of its positions inside them (maybe none); the shares' sums,
    // each weighted by 1/count, are added by one allreduce (docs/distributed.md).
    const auto lo = std::lower_bound(positions_.begin(), positions_.end(), begin);
    const auto hi = std::lower_bound(lo, positions_.end(), begin + count);
    shuffled_->SharedBatchCurvatureProduct(curvature_, theta_, V, out, lo - positions_.begin(),
                                           hi - lo, count);
  }
  if (damping_ != 0) objective_.backend().Axpby(T(damping_), V, T(1), out);
}

namespace {

// ‖r_j‖_{M⁻¹} ≤ ‖b‖_{M⁻¹} holds with full batches while the recursion is stable, and
// minibatch residuals are noisy but do not grow exponentially: beyond this factor times
// (j + 1)‖b‖_{M⁻¹} is divergence.
constexpr double kDivergenceFactor = 10;
// Automatic s = factor · λ̂. The series converges for s > λ_max/2 (then |1 − μ/s| < 1 on
// the whole spectrum (0, λ_max]), and the slow directions, small μ, converge like
// (1 − μ/s)^J: s near λ_max/2 (Richardson's optimal step) needs about half the depth of
// the textbook s > λ_max. 0.55 keeps a margin for λ̂ underestimating λ_max by up to 10%
// (Lanczos' estimate is a lower bound, but 10-20 steps give λ_max to ~1e-6 on the
// examples).
constexpr double kAutoScaleFactor = 0.55;
// Minibatches whose λ_max is estimated too (when batch < n): a minibatch operator has
// larger top eigenvalues than the full one, and each must stay below 2s.
constexpr int kAutoScaleBatches = 4;

// out = A_window V for the window [first, first + count) of the examples, wrapping around
// the end. The two parts are averages over their own examples, so they are weighted by
// their sizes: (head·A_head + tail·A_tail)/count. `scratch` has V's shape.
template <typename T>
void ApplyWindow(StochasticOperator<T>& A, const kernels::Matrix<T>& V, kernels::Matrix<T> out,
                 kernels::Matrix<T> scratch, int64_t first, int64_t count) {
  const int64_t n = A.num_examples();
  const int64_t head = std::min(count, n - first), tail = count - head;
  A.ApplyBatch(V, out, first, head);
  if (tail == 0) return;
  A.ApplyBatch(V, scratch, 0, tail);
  A.backend().Axpby(T(double(tail) / count), scratch, T(double(head) / count), out);
}

// One fixed minibatch as a LinearOperator, for Lanczos.
template <typename T>
class WindowOperator final : public LinearOperator<T> {
 public:
  WindowOperator(StochasticOperator<T>& A, int64_t first, int64_t count)
      : A_(A), first_(first), count_(count) {}
  int64_t size() const override { return A_.size(); }
  kernels::Backend<T>& backend() const override { return A_.backend(); }
  void Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) override {
    if (scratch_.rows() != V.rows()) scratch_ = backend().Allocate(V.rows(), V.cols());
    ApplyWindow(A_, V, out, scratch_, first_, count_);
  }

 private:
  StochasticOperator<T>& A_;
  int64_t first_, count_;
  kernels::Matrix<T> scratch_;
};

std::string Num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", x);
  return buf;
}

template <typename T>
std::vector<double> RowNorms(kernels::Backend<T>& be, const kernels::Matrix<T>& A,
                             kernels::Matrix<T> scratch) {
  be.RowDots(A, A, scratch);
  std::vector<T> host(A.rows());
  be.Download(scratch, host.data());
  std::vector<double> out(host.size());
  for (size_t i = 0; i < host.size(); ++i) out[i] = std::sqrt(static_cast<double>(host[i]));
  return out;
}

}  // namespace

template <typename T>
SolveSummary Lissa(StochasticOperator<T>& A, const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                   const LissaOptions& options, LinearOperator<T>* M) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  kernels::Backend<T>& be = A.backend();
  const int64_t m = B.rows(), p = B.cols(), n = A.num_examples();
  LETHE_CHECK(p == A.size() && X.rows() == m && X.cols() == p && n >= 1);
  LETHE_CHECK(!M || M->size() == p);
  SolveSummary summary;
  summary.solver = "lissa";
  auto finish = [&] {
    RecomputeResiduals(A, 0.0, B, X, &summary);
    summary.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return summary;
  };
  be.Fill(X, T(0));

  const int64_t batch = options.batch_size == 0 ? n : std::min(options.batch_size, n);
  // With the full data every step is the same deterministic operator: one run suffices.
  const bool full_batch = batch == n;
  const int repeats = full_batch ? 1 : options.repeats;
  std::mt19937_64 rng(options.seed);

  double s = options.scale;
  const char* of = M ? " of the preconditioned operator" : "";
  std::string scale_note = "--lissa-scale (now " + Num(s) + ")";
  if (s == 0) {
    double top = EstimateLargestEigenvalue(A, options.scale_iterations, options.seed, M);
    for (int k = 0; k < kAutoScaleBatches && !full_batch && top > 0; ++k) {
      WindowOperator<T> window(A, static_cast<int64_t>(rng() % n), batch);
      top = std::max(top, EstimateLargestEigenvalue(window, options.scale_iterations, rng(), M));
    }
    if (!(top > 0)) {
      summary.termination = Termination::kNegativeCurvature;
      summary.message = std::string("the largest eigenvalue") + of + " is " + Num(top) +
                        " <= 0: it is not positive definite; add damping";
      return finish();
    }
    s = kAutoScaleFactor * top;
    scale_note = "--lissa-scale (now automatic: " + Num(s) + " = " + Num(kAutoScaleFactor) +
                 " × estimated largest eigenvalue" + of + " " + Num(top) + ")";
  }

  // R: the residual b − A_j x; Z = M⁻¹ R (R itself without a preconditioner); S: the sum
  // of the repeats' answers.
  kernels::Matrix<T> R = be.Allocate(m, p), AX = be.Allocate(m, p), scratch,
                     scalars = be.Allocate(m, 1);
  kernels::Matrix<T> Z = M ? be.Allocate(m, p) : R;
  kernels::Matrix<T> S = repeats > 1 ? be.Allocate(m, p) : kernels::Matrix<T>();
  if (!full_batch) scratch = be.Allocate(m, p);
  if (repeats > 1) be.Fill(S, T(0));
  auto row_dots = [&](const kernels::Matrix<T>& U, const kernels::Matrix<T>& V) {
    be.RowDots(U, V, scalars);
    std::vector<T> host(m);
    be.Download(scalars, host.data());
    return std::vector<double>(host.begin(), host.end());
  };
  const std::vector<double> bb = row_dots(B, B);
  if (M) M->Apply(B, Z);
  const std::vector<double> b_m = M ? row_dots(B, Z) : bb;  // ‖b‖²_{M⁻¹}
  // A minibatch is the window [start, start + batch) of the shuffled examples, wrapping
  // around the end, with start uniform: every example is in it with probability
  // batch/n, so E[A_batch] = A exactly and the estimate is unbiased for the full-batch
  // iterate.
  auto apply_batch = [&](const kernels::Matrix<T>& V, kernels::Matrix<T> out) {
    if (full_batch) return A.ApplyBatch(V, out, 0, n);
    ApplyWindow(A, V, out, scratch, static_cast<int64_t>(rng() % n), batch);
  };

  const int64_t total_steps = int64_t{options.depth} * repeats;
  ReportProgress(options.progress, "lissa", 0, total_steps);
  int completed = 0;
  for (int r = 0; r < repeats && summary.termination != Termination::kDiverged; ++r) {
    be.Fill(X, T(0));
    for (int j = 0; j <= options.depth; ++j) {
      // r_j = b − A_j x_j; x_0 = 0 needs no application.
      be.Copy(B, R);
      if (j > 0) {
        ++summary.iterations;
        apply_batch(X, AX);
        be.Axpby(T(-1), AX, T(1), R);
        ReportProgress(options.progress, "lissa", summary.iterations, total_steps);
        if (full_batch) {  // r_j is the true residual: the stopping test
          const std::vector<double> rr = row_dots(R, R);
          bool reached = true;
          for (int64_t i = 0; i < m; ++i)
            reached = reached && std::sqrt(rr[i]) <= options.relative_tolerance * std::sqrt(bb[i]);
          if (reached) break;
        }
      }
      if (M) M->Apply(R, Z);
      if (j > 0) {
        const std::vector<double> rz = M ? row_dots(R, Z) : row_dots(R, R);
        for (int64_t i = 0; i < m; ++i) {
          if (std::isfinite(rz[i]) && rz[i] <= std::pow(kDivergenceFactor * (j + 1), 2) * b_m[i])
            continue;
          summary.termination = Termination::kDiverged;
          summary.message = "increase " + scale_note + ": the recursion diverged at step " +
                            std::to_string(j) + " of repeat " + std::to_string(r + 1) +
                            " (‖r‖_M⁻¹ / ‖b‖_M⁻¹ = " + Num(std::sqrt(rz[i] / b_m[i])) +
                            " for right-hand side " + std::to_string(i) +
                            "); with indefinite curvature add --damping";
          break;
        }
        if (summary.termination == Termination::kDiverged) break;
      }
      be.Axpby(T(1 / s), Z, T(1), X);  // x ← x + M⁻¹ r / s
    }
    if (summary.termination == Termination::kDiverged) break;
    if (repeats > 1) be.Axpby(T(1), X, T(1), S);
    ++completed;
  }
  // The average over the repeats that completed (none: x = 0).
  if (summary.termination == Termination::kDiverged && completed == 0) be.Fill(X, T(0));
  if (repeats > 1) {
    if (completed > 0)
      be.Axpby(T(1.0 / completed), S, T(0), X);
    else
      be.Fill(X, T(0));
  }
  if (M) summary.preconditioner = "kfac";
  const std::string what = (full_batch ? "full batch" : "batch " + std::to_string(batch)) +
                           ", scale " + Num(s) +
                           (full_batch ? "" : ", " + std::to_string(repeats) + " repeats");
  finish();
  if (summary.termination == Termination::kDiverged) return summary;
  if (summary.residual_computed() && summary.relative_residual <= options.relative_tolerance) {
    summary.termination = Termination::kConverged;
    summary.message = std::to_string(summary.iterations) + " steps (" + what + ")";
  } else {
    summary.termination = Termination::kMaxIterations;
    summary.message = "relative residual " + Num(summary.relative_residual) +
                      " above --lissa-tolerance " + Num(options.relative_tolerance) +
                      " after depth " + std::to_string(options.depth) + " (" + what +
                      "); raise --lissa-depth" + (full_batch ? "" : " or --lissa-batch") +
                      ", or use --solver cg";
  }
  return summary;
}

#define LETHE_INSTANTIATE(T)                                                        \
  template class MinibatchCurvatureOperator<T>;                                     \
  template SolveSummary Lissa<T>(StochasticOperator<T>&, const kernels::Matrix<T>&, \
                                 kernels::Matrix<T>, const LissaOptions&, LinearOperator<T>*);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe
