// The exact curvature at one point as a preconditioner for conjugate gradient:
//
//   M = C(θ₀) + λI = L Lᵀ,   M⁻¹ r = L⁻ᵀ L⁻¹ r,
//
// C the Hessian or Gauss-Newton matrix of an objective at θ₀, written out (p × p) and
// factorised once (DirectFactorization: the dense form of engine/dense_curvature.h for a
// one-linear-layer model, p curvature products otherwise; Cholesky).
//
// Why it pays in a stream of deletion requests: request j solves (C_j(θ_j) + λI) d = g_j,
// C_j the curvature over the examples kept after j removals, at the model θ_j it produced.
// Each single-example removal moves C by O(1/n) (the example's own term, and θ's move of
// O(1/n)), so after j requests M⁻¹(C_j + λI) = I + E with ‖E‖ = O(j/n): preconditioned CG
// contracts the error by about ‖E‖/2 per iteration, and reaches the Newton step's tolerance
// η = 1e-4 in 2–3 iterations for the whole stream (measured in docs/performance.md), where
// K-FAC needs ~35. A preconditioner built at an earlier θ changes how many iterations CG
// takes, never its answer: CG stops on the true residual ‖(C_j + λI)d − g_j‖ ≤ η‖g_j‖.
//
// Cost: forming C (for softmax regression on digits784, p = 7,850: 45 weighted Gram
// products, 0.28 TFLOP) and factorising it (p³/3 = 0.16 TFLOP), i.e. seconds to tens of
// seconds, once; each application is two triangular solves, 2p² flops reading the factor
// (p²·sizeof(T) bytes: 246 MB in f32, 493 MB in f64 at p = 7,850). It pays only where it is
// reused over many requests (lethe unlearn --requests, tools/lethe/stream_serve.h).
// Memory: the factor, p²·sizeof(T) bytes on the backend, refused above
// DensePreconditionerOptions::max_bytes with a message naming the amount.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/objective.h"
#include "engine/solvers/direct.h"
#include "engine/solvers/linear_operator.h"

namespace lethe {

struct DensePreconditionerOptions {
  // Refuse to build a factor larger than this (p²·sizeof(T) bytes): 4 GB, i.e. p up to
  // 22,360 in f64 or 31,622 in f32.
  double max_bytes = 4e9;
  void Validate() const;  // throws lethe::Error naming the bad field
};

// Bytes the factor of a p-parameter model holds in a type of `bytes_per_value` bytes.
double DensePreconditionerBytes(int64_t num_params, int64_t bytes_per_value);

template <typename T>
class DensePreconditioner final : public LinearOperator<T> {
 public:
  // Forms C(θ) + λI on the objective's backend and factorises it. Throws lethe::Error
  // when the factor would exceed options.max_bytes, or when C + λI is not positive
  // definite (the message names its smallest eigenvalue and the damping that would fix it).
  DensePreconditioner(Objective<T>& objective, const kernels::Matrix<T>& theta,
                      Curvature curvature, double damping, const DensePreconditionerOptions& options);
  // One whose factor was built earlier, at a θ of the same objective (kept on disk by
  // tools/lethe/dense_cache.h): `factor` (p × p, row-major, as factor() returns it) is
  // uploaded to `backend`. The caller checks that it was built for this curvature, damping
  // and l2; a stale one only costs CG iterations (see above).
  DensePreconditioner(kernels::Backend<T>& backend, const std::vector<T>& factor, int64_t num_params,
                      Curvature curvature, double damping, double l2);
  ~DensePreconditioner() override;

  int64_t size() const override { return factor_.size(); }
  kernels::Backend<T>& backend() const override { return *backend_; }
  // out = M⁻¹ V, row by row.
  void Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) override;

  // What it was built for: a later objective may use it when these match (Fits).
  bool Fits(const Objective<T>& objective, Curvature curvature, double damping) const;
  double setup_seconds() const { return setup_seconds_; }
  Curvature curvature() const { return curvature_; }
  double damping() const { return damping_; }
  double l2() const { return l2_; }
  // The factor's p² values (row-major; its lower triangle is L), downloaded.
  std::vector<T> Factor() const;

 private:
  // Distributed: every rank takes rank 0's factor, or its failure (dense_preconditioner.cc).
  std::string AdoptRootFactor(distributed::Communicator& comm, const std::string& failure);

  kernels::Backend<T>* backend_;
  DirectFactorization<T> factor_;
  int64_t num_params_;
  Curvature curvature_;
  double damping_, l2_, setup_seconds_ = 0;
};

// A dense preconditioner kept across the requests of one process (lethe unlearn
// --requests): at most one per precision (a step's solve may run in f32 or f64), built
// on first use at the θ of that request, reused while it Fits. The caller owns the
// backends the factors live on, and keeps them alive as long as the store.
class DensePreconditionerStore {
 public:
  DensePreconditionerStore();
  ~DensePreconditionerStore();
  // The stored preconditioner of type T when it fits `objective`, curvature and damping;
  // otherwise a new one built at θ (replacing the old). *built says which.
  template <typename T>
  DensePreconditioner<T>* Get(Objective<T>& objective, const kernels::Matrix<T>& theta,
                              Curvature curvature, double damping,
                              const DensePreconditionerOptions& options, bool* built);
  // Drops both (the next Get builds afresh): the caller's policy when the preconditioner
  // has drifted too far from the current curvature (its solves take many iterations).
  void Reset();
  int64_t builds() const { return builds_; }
  // The stored one of type T (null when none), and one loaded from elsewhere made the
  // stored one (it is not a build).
  template <typename T>
  DensePreconditioner<T>* Current() const;
  template <typename T>
  void Adopt(std::unique_ptr<DensePreconditioner<T>> preconditioner);

 private:
  std::unique_ptr<DensePreconditioner<float>> f32_;
  std::unique_ptr<DensePreconditioner<double>> f64_;
  int64_t builds_ = 0;
};

}  // namespace lethe
