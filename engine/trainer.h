// Training: the retraining baseline every unlearning result is compared against, so on
// convex models it must reach the true optimum (‖∇L‖ ≤ 1e-9 in f64), deterministically.
//
// - lbfgs: full-batch L-BFGS (LBFGSpp, strong-Wolfe line search of Nocedal & Wright). Near the optimum in
//   finite precision the line search can stall before the tolerance; then, unless
//   polish is off, Newton-CG steps (exact Hessian-vector products) finish the job.
// - newton-cg: truncated Newton: solve H d = −∇L by CG (Eisenstat-Walker forcing
//   η = min(0.5, √‖∇L‖)), backtracking line search on L. For small or convex models.
// - adam: minibatch Adam for large or non-convex problems; data reshuffled each epoch
//   from the seed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "engine/objective.h"

namespace lethe {

enum class Optimizer { kLbfgs, kNewtonCg, kAdam };
const char* Name(Optimizer o);
Optimizer ParseOptimizer(const std::string& name);  // throws lethe::Error

struct TrainOptions {
  Optimizer optimizer = Optimizer::kLbfgs;
  double gradient_tolerance = 1e-9;  // stop when ‖∇L(θ)‖₂ ≤ this (full batch)
  int max_iterations = 20000;        // lbfgs / newton-cg iterations, lbfgs's polish included
  int lbfgs_memory = 20;             // correction pairs kept by L-BFGS
  bool polish = true;                // lbfgs: finish with newton-cg if it stalls
  int max_cg_iterations = 500;       // per Newton step
  // adam
  double learning_rate = 1e-3;
  int64_t batch_size = 128;
  int epochs = 100;
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  uint64_t seed = 0;
  void Validate() const;
};

struct TrainProgress {
  const char* phase;
  int iteration;
  double objective;  // Adam: the epoch's mean minibatch objective (θ moves during it)
  double grad_norm;  // NaN where not computed (Adam's epochs: no full pass between them)
};

struct TrainSummary {
  std::string optimizer;
  bool converged = false;  // ‖∇L‖ ≤ gradient_tolerance at the end
  int iterations = 0;      // all phases together
  int evaluations = 0;     // full passes of objective + gradient
  // Newton-CG: the CG iterations of every step together (each one Hessian-vector product;
  // each step's CG also makes one more for its explicit final residual). Under mpirun each
  // product is one reduction of p values (docs/distributed.md, docs/scaling.md).
  int cg_iterations = 0;
  double objective = 0;
  double grad_norm = 0;
  double seconds = 0;
  std::string message;
};

// θ (1 × p) holds the starting point and receives the result.
template <typename T>
TrainSummary Train(Objective<T>& objective, kernels::Matrix<T> theta, const TrainOptions& options,
                   const std::function<void(const TrainProgress&)>& progress = {});

}  // namespace lethe
