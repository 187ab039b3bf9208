// A symmetric linear operator on parameter space, applied to several vectors at once
// (the rows of an m × p matrix). Solvers see only this, never a model (as Spectra's
// perform_op): the Hessian, the Gauss-Newton matrix and their damped versions are all
// LinearOperators.
#pragma once

#include "engine/dense_curvature.h"
#include "engine/objective.h"
#include "kernels/backend.h"

namespace lethe {

template <typename T>
class LinearOperator {
 public:
  virtual ~LinearOperator() = default;
  virtual int64_t size() const = 0;  // p
  virtual kernels::Backend<T>& backend() const = 0;
  // out (m × p), row r = A · V.row(r).
  virtual void Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) = 0;
  // Writes the whole operator, p × p (both triangles), into out and returns true when it
  // can do so faster than p applications (a linear model's curvature: a few large Gram
  // products, engine/dense_curvature.h); returns false, out untouched, otherwise. The
  // direct solver forms A with it where offered.
  virtual bool FormDense(kernels::Matrix<T> /*out*/) { return false; }
};

// (C + damping · I) with C the Hessian or Gauss-Newton matrix of `objective` at θ.
template <typename T>
class CurvatureOperator final : public LinearOperator<T> {
 public:
  CurvatureOperator(Objective<T>& objective, kernels::Matrix<T> theta, Curvature curvature,
                    double damping)
      : objective_(objective), theta_(theta), curvature_(curvature), damping_(damping) {}
  int64_t size() const override { return objective_.num_params(); }
  kernels::Backend<T>& backend() const override { return objective_.backend(); }
  void Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) override {
    objective_.CurvatureProduct(curvature_, theta_, V, out);
    if (damping_ != 0) objective_.backend().Axpby(T(damping_), V, T(1), out);
    ++applications_;
  }
  int64_t applications() const { return applications_; }
  bool FormDense(kernels::Matrix<T> out) override {
    return DenseCurvature(objective_, curvature_, theta_, damping_, out);
  }

 private:
  Objective<T>& objective_;
  kernels::Matrix<T> theta_;
  Curvature curvature_;
  double damping_;
  int64_t applications_ = 0;
};

}  // namespace lethe
