#include "engine/trainer.h"

#include <LBFGS.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "common/error.h"
#include "engine/solvers/cg.h"

namespace lethe {

const char* Name(Optimizer o) {
  switch (o) {
    case Optimizer::kLbfgs: return "lbfgs";
    case Optimizer::kNewtonCg: return "newton-cg";
    case Optimizer::kAdam: return "adam";
  }
  return "?";
}

Optimizer ParseOptimizer(const std::string& name) {
  for (Optimizer o : {Optimizer::kLbfgs, Optimizer::kNewtonCg, Optimizer::kAdam})
    if (name == Name(o)) return o;
  Fail("--optimizer ", name, ": unknown (known: lbfgs, newton-cg, adam)");
}

void TrainOptions::Validate() const {
  if (!(gradient_tolerance > 0)) Fail("--tolerance = ", gradient_tolerance, ": must be > 0");
  if (max_iterations < 0) Fail("--max-iterations = ", max_iterations, ": must be >= 0");
  if (lbfgs_memory < 1) Fail("--lbfgs-memory = ", lbfgs_memory, ": must be >= 1");
  if (max_cg_iterations < 1) Fail("max_cg_iterations = ", max_cg_iterations, ": must be >= 1");
  if (!(learning_rate > 0)) Fail("--learning-rate = ", learning_rate, ": must be > 0");
  if (batch_size < 1) Fail("--batch-size = ", batch_size, ": must be >= 1");
  if (epochs < 0) Fail("--epochs = ", epochs, ": must be >= 0");
}

namespace {

using Clock = std::chrono::steady_clock;

template <typename T>
struct Context {
  Objective<T>& objective;
  kernels::Backend<T>& be;
  kernels::Matrix<T> theta, grad;
  const TrainOptions& options;
  const std::function<void(const TrainProgress&)>& progress;
  TrainSummary& summary;

  // L and ∇L at θ; returns ‖∇L‖.
  double Evaluate(double* value) {
    *value = objective.ValueAndGradient(theta, grad);
    ++summary.evaluations;
    return static_cast<double>(kernels::Norm(be, grad));
  }
  void Report(const char* phase, int it, double f, double g) {
    if (progress) progress({phase, it, f, g});
  }
};

// Full-batch L-BFGS on host vectors (LBFGSpp works on Eigen vectors); θ and ∇L cross
// to the device once per evaluation, which is negligible next to a pass over the data.
template <typename T>
void RunLbfgs(Context<T>& c) {
  // LBFGSpp reads max_iterations = 0 as "no limit"; lethe's 0 means no iteration at all.
  if (c.options.max_iterations == 0) return;
  const int64_t p = c.objective.num_params();
  std::vector<T> host(p);
  LBFGSpp::LBFGSParam<double> param;
  param.m = c.options.lbfgs_memory;
  param.epsilon = c.options.gradient_tolerance;
  param.epsilon_rel = 0;
  param.past = 0;
  param.max_iterations = c.options.max_iterations;
  param.max_linesearch = 60;
  param.linesearch = LBFGSpp::LBFGS_LINESEARCH_BACKTRACKING_STRONG_WOLFE;
  LBFGSpp::LBFGSSolver<double, LBFGSpp::LineSearchNocedalWright> solver(param);
  int calls = 0;
  // The best point evaluated: a failed line search may leave x at a worse trial point.
  Eigen::VectorXd best_x;
  double best_f = std::numeric_limits<double>::infinity();
  int since_best = 0;
  // LBFGSpp's line search can loop on steps too small to change f (at the limit of
  // precision, short of the tolerance) and then produce NaN; stop it there.
  struct Stalled {};
  auto f = [&](const Eigen::VectorXd& x, Eigen::VectorXd& g) -> double {
    if (!x.allFinite()) throw Stalled{};
    for (int64_t i = 0; i < p; ++i) host[i] = static_cast<T>(x[i]);
    c.be.Upload(host.data(), c.theta);
    double value;
    const double gnorm = c.Evaluate(&value);
    c.be.Download(c.grad, host.data());
    g.resize(p);
    for (int64_t i = 0; i < p; ++i) g[i] = static_cast<double>(host[i]);
    c.Report("lbfgs", ++calls, value, gnorm);
    if (value < best_f) {
      best_f = value, best_x = x, since_best = 0;
    } else if (++since_best > 40 || !std::isfinite(value)) {
      throw Stalled{};
    }
    return value;
  };
  c.be.Download(c.theta, host.data());
  Eigen::VectorXd x(p);
  for (int64_t i = 0; i < p; ++i) x[i] = static_cast<double>(host[i]);
  double fx = 0;
  int iterations = 0;
  try {
    iterations = solver.minimize(f, x, fx);
  } catch (const Stalled&) {
    c.summary.message = "lbfgs: line search stalled at the limit of precision";
    iterations = calls;
  } catch (const std::exception& e) {
    c.summary.message = std::string("lbfgs stopped: ") + e.what();
    iterations = calls;
  }
  // Keep the best point evaluated (a failed line search may leave x at a worse trial point).
  if (best_x.size() == p && !(fx <= best_f && x.allFinite())) x = best_x;
  c.summary.iterations += iterations;
  for (int64_t i = 0; i < p; ++i) host[i] = static_cast<T>(x[i]);
  c.be.Upload(host.data(), c.theta);
}

// Truncated Newton with backtracking (Armijo) line search.
template <typename T>
void RunNewtonCg(Context<T>& c, int max_iterations) {
  const int64_t p = c.objective.num_params();
  kernels::Matrix<T> step = c.be.Allocate(1, p), neg_grad = c.be.Allocate(1, p);
  kernels::Matrix<T> trial = c.be.Allocate(1, p);
  double value;
  double gnorm = c.Evaluate(&value);
  for (int it = 0; it < max_iterations && gnorm > c.options.gradient_tolerance; ++it) {
    CurvatureOperator<T> H(c.objective, c.theta, Curvature::kHessian, 0.0);
    CgOptions cg;
    cg.relative_tolerance = std::min(0.5, std::sqrt(gnorm));
    cg.max_iterations = c.options.max_cg_iterations;
    c.be.Axpby(T(-1), c.grad, T(0), neg_grad);
    c.be.Fill(step, T(0));
    SolveSummary s = ConjugateGradient(H, neg_grad, step, cg);
    c.summary.cg_iterations += s.iterations;
    // Negative curvature before any progress: fall back to steepest descent.
    double slope = static_cast<double>(c.be.Dot(step, c.grad));
    if (!(slope < 0)) {
      c.be.Copy(neg_grad, step);
      slope = -gnorm * gnorm;
    }
    double t = 1.0;
    bool accepted = false;
    for (int ls = 0; ls < 60; ++ls, t *= 0.5) {
      c.be.Copy(c.theta, trial);
      c.be.Axpby(T(t), step, T(1), trial);
      const double f_trial = c.objective.ValueAndGradient(trial, kernels::Matrix<T>());
      ++c.summary.evaluations;
      // Armijo with a tolerance for rounding: at the optimum f changes by ~ε|f| only.
      if (f_trial <= value + 1e-4 * t * slope + 1e-15 * std::abs(value)) {
        accepted = true;
        break;
      }
    }
    ++c.summary.iterations;
    if (!accepted) {
      c.summary.message = "newton-cg: line search found no decrease (at the limit of precision)";
      break;
    }
    c.be.Copy(trial, c.theta);
    gnorm = c.Evaluate(&value);
    c.Report("newton-cg", it + 1, value, gnorm);
  }
}

template <typename T>
void RunAdam(Context<T>& c) {
  const TrainOptions& o = c.options;
  Objective<T>& obj = c.objective;
  // Distributed (docs/distributed.md): every rank draws the same permutation of the N
  // global rows from the seed, so the global minibatches are those of one process; each
  // rank computes the share of each minibatch that lies in its block and one allreduce of
  // p + 1 values per step sums them (SharedBatchValueAndGradient). The Adam update then
  // runs identically on every rank.
  const int64_t N = obj.global_examples(), n = obj.num_examples(), p = obj.num_params();
  const int64_t offset = obj.row_offset();
  const bool shared = obj.distributed();
  if (obj.data().streamed())
    Fail("--optimizer adam shuffles a copy of the whole data every epoch: not with streamed "
         "rows (--max-memory); use --optimizer lbfgs or newton-cg, which stream");
  // A shuffled copy of this rank's rows per epoch, in the order they appear in the
  // permutation: each minibatch's share is a contiguous range of it.
  DeviceData<T> shuffled{c.be.Allocate(n, obj.data().X.cols()), c.be.Allocate(n, obj.data().Y.cols()),
                         nullptr};
  Objective<T> batch_objective(c.be, obj.arch(), shuffled,
                               ObjectiveOptions{std::min<int64_t>(o.batch_size, 2048)});
  if (shared) batch_objective.Distribute(*obj.communicator());
  kernels::Matrix<T> m = c.be.Zeros(1, p), v = c.be.Zeros(1, p), g2 = c.be.Allocate(1, p);
  std::vector<T> mh(p), vh(p), th(p);
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> order(N), local(n), share_end;
  int64_t t = 0;
  // No pass over the full data between epochs: Adam's steps never read the full gradient,
  // and at the default tolerance it never stops early, so a per-epoch ‖∇L‖ would cost up
  // to one more epoch per epoch for a progress line. Progress shows the epoch's mean
  // minibatch objective (θ moves during the epoch); Train() evaluates ‖∇L‖ once at the end.
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    double epoch_sum = 0;
    std::iota(order.begin(), order.end(), 0);
    // Fisher-Yates from raw 64-bit draws (std::shuffle's use of the engine is unspecified).
    for (int64_t i = N - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
    // This rank's rows in permutation order, and where each minibatch's share ends in it
    // (one process: all rows, order itself).
    local.clear();
    share_end.clear();
    for (int64_t begin = 0; begin < N; begin += o.batch_size) {
      for (int64_t j = begin; j < std::min(N, begin + o.batch_size); ++j)
        if (order[j] >= offset && order[j] < offset + n) local.push_back(order[j] - offset);
      share_end.push_back(static_cast<int64_t>(local.size()));
    }
    c.be.GatherRows(obj.data().X, local.data(), shuffled.X);
    c.be.GatherRows(obj.data().Y, local.data(), shuffled.Y);
    for (int64_t begin = 0, b = 0; begin < N; begin += o.batch_size, ++b) {
      const int64_t count = std::min(o.batch_size, N - begin);
      const int64_t share_begin = b == 0 ? 0 : share_end[b - 1];
      epoch_sum += (shared ? batch_objective.SharedBatchValueAndGradient(
                                 c.theta, share_begin, share_end[b] - share_begin, count, c.grad)
                           : batch_objective.BatchValueAndGradient(c.theta, begin, count, c.grad)) *
                   static_cast<double>(count);
      ++t;
      // m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²;  θ −= lr · m̂ / (√v̂ + ε)
      c.be.Axpby(T(1 - o.beta1), c.grad, T(o.beta1), m);
      c.be.Multiply(c.grad, c.grad, T(0), g2);
      c.be.Axpby(T(1 - o.beta2), g2, T(o.beta2), v);
      c.be.Download(m, mh.data());
      c.be.Download(v, vh.data());
      c.be.Download(c.theta, th.data());
      const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(t));
      const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(t));
      for (int64_t i = 0; i < p; ++i)
        th[i] -= static_cast<T>(o.learning_rate * (mh[i] / bc1) /
                                (std::sqrt(static_cast<double>(vh[i]) / bc2) + o.epsilon));
      c.be.Upload(th.data(), c.theta);
    }
    ++c.summary.iterations;
    c.Report("adam", epoch + 1, epoch_sum / static_cast<double>(N),
             std::numeric_limits<double>::quiet_NaN());
  }
}

}  // namespace

template <typename T>
TrainSummary Train(Objective<T>& objective, kernels::Matrix<T> theta, const TrainOptions& options,
                   const std::function<void(const TrainProgress&)>& progress) {
  options.Validate();
  const auto start = Clock::now();
  TrainSummary summary;
  summary.optimizer = Name(options.optimizer);
  kernels::Backend<T>& be = objective.backend();
  Context<T> c{objective, be, theta, be.Allocate(1, objective.num_params()), options, progress,
               summary};
  switch (options.optimizer) {
    case Optimizer::kLbfgs:
      RunLbfgs(c);
      if (options.polish) {
        // The polish shares max_iterations with L-BFGS: the limit is on the whole run.
        double value;
        const int left = std::min(50, options.max_iterations - summary.iterations);
        if (left > 0 && c.Evaluate(&value) > options.gradient_tolerance) {
          RunNewtonCg(c, left);
          summary.optimizer = "lbfgs+newton-cg";
        }
      }
      break;
    case Optimizer::kNewtonCg:
      RunNewtonCg(c, options.max_iterations);
      break;
    case Optimizer::kAdam:
      RunAdam(c);
      break;
  }
  summary.grad_norm = c.Evaluate(&summary.objective);
  summary.converged = summary.grad_norm <= options.gradient_tolerance;
  if (!summary.converged && summary.message.empty())
    summary.message = "gradient norm above tolerance after the iteration limit";
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return summary;
}

template TrainSummary Train<float>(Objective<float>&, kernels::Matrix<float>, const TrainOptions&,
                                   const std::function<void(const TrainProgress&)>&);
template TrainSummary Train<double>(Objective<double>&, kernels::Matrix<double>,
                                    const TrainOptions&,
                                    const std::function<void(const TrainProgress&)>&);

}  // namespace lethe
