// The finite-difference harness of the whole-objective derivative tests (test_derivatives.cc,
// test_norm_models.cc): an Objective on the CPU f64 backend at a model's θ, θ moved along a
// direction, and the checks they share — the gradient and the explicit Hessian against
// central differences, the per-example gradients summing to the gradient, and vᵀGv against
// the Jacobian quadratic form from differences of the outputs.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "tests/engine/test_problems.h"

namespace lethe::testing {

// Central differences have error O(ε²·f''') + O(ε_mach·f/ε): with ε = 1e-5 both are
// ~1e-10 relative on these O(1) problems, so 1e-7 catches any missing term or sign.
constexpr double kFdStep = 1e-5;
constexpr double kFdTolerance = 1e-7;
// Identities that hold exactly up to rounding (symmetry, sums of per-example terms).
constexpr double kRoundingTolerance = 1e-12;

template <typename Param>
class ObjectiveHarness : public ::testing::TestWithParam<Param> {
 protected:
  using Matrix = kernels::Matrix<double>;

  // The objective of `model` (θ and constants as given) on `data`.
  void Start(const io::ModelSpec& spec, const io::Dataset& data, const Model& model,
             const ObjectiveOptions& options) {
    backend_ = kernels::MakeBackend<double>({});
    spec_ = spec;
    data_ = data;
    model_ = model;
    objective_ = std::make_unique<Objective<double>>(*backend_, model_.arch,
                                                     UploadData(*backend_, data_), options);
    p_ = objective_->num_params();
    theta_ = Upload(model_.theta);
  }

  Matrix Upload(const std::vector<double>& v) {
    Matrix m = backend_->Allocate(1, static_cast<int64_t>(v.size()));
    backend_->Upload(v.data(), m);
    return m;
  }
  std::vector<double> Download(const Matrix& m) {
    std::vector<double> v(m.size());
    backend_->Download(m, v.data());
    return v;
  }
  std::vector<double> RandomVector(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::vector<double> v(p_);
    for (double& x : v) x = normal(rng);
    return v;
  }
  std::vector<double> Unit(int64_t j) {
    std::vector<double> e(p_, 0.0);
    e[j] = 1;
    return e;
  }
  // θ + t·v.
  std::vector<double> Shifted(double t, const std::vector<double>& v) {
    std::vector<double> out = model_.theta;
    for (int64_t i = 0; i < p_; ++i) out[i] += t * v[i];
    return out;
  }
  double Value(const std::vector<double>& theta) {
    return objective_->ValueAndGradient(Upload(theta), Matrix());
  }
  std::vector<double> Gradient(const std::vector<double>& theta) {
    Matrix g = backend_->Allocate(1, p_);
    objective_->ValueAndGradient(Upload(theta), g);
    return Download(g);
  }
  std::vector<double> CurvatureTimes(Curvature c, const std::vector<double>& v) {
    Matrix out = backend_->Allocate(1, p_);
    objective_->CurvatureProduct(c, theta_, Upload(v), out);
    return Download(out);
  }
  static double Dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
  }
  static double MaxAbs(const std::vector<double>& a) {
    double m = 0;
    for (double x : a) m = std::max(m, std::abs(x));
    return m;
  }
  static void ExpectClose(const std::vector<double>& got, const std::vector<double>& want,
                          double tol, const char* what) {
    ASSERT_EQ(got.size(), want.size());
    const double scale = std::max(1.0, MaxAbs(want));
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], tol * scale) << what << " component " << i;
  }

  // ∇L against (L(θ + ε eⱼ) − L(θ − ε eⱼ)) / 2ε, every component.
  void ExpectGradientMatchesDifferences() {
    const std::vector<double> g = Gradient(model_.theta);
    std::vector<double> fd(p_);
    for (int64_t j = 0; j < p_; ++j)
      fd[j] = (Value(Shifted(kFdStep, Unit(j))) - Value(Shifted(-kFdStep, Unit(j)))) / (2 * kFdStep);
    ExpectClose(g, fd, kFdTolerance, "gradient");
  }

  // (1/n) Σ ∇lᵢ + l2 θ = ∇L, to rounding. Returns the per-example gradients (n × p).
  std::vector<double> ExpectPerExampleGradientsSumToGradient() {
    const int64_t n = objective_->num_examples();
    Matrix G = backend_->Allocate(n, p_);
    objective_->PerExampleGradients(theta_, 0, n, G);
    const std::vector<double> rows = Download(G);
    std::vector<double> sum(p_, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < p_; ++j) sum[j] += rows[i * p_ + j] / n;
    for (int64_t j = 0; j < p_; ++j) sum[j] += spec_.l2 * model_.theta[j];
    ExpectClose(sum, Gradient(model_.theta), kRoundingTolerance, "sum of per-example gradients");
    return rows;
  }

  // H · I in one product (all p columns: several right-hand sides per pass) against central
  // differences of the gradient, column by column, and symmetric to rounding.
  void ExpectExplicitHessianMatchesDifferences() {
    std::vector<double> eye(p_ * p_, 0.0);
    for (int64_t j = 0; j < p_; ++j) eye[j * p_ + j] = 1;
    Matrix I = backend_->Allocate(p_, p_), H = backend_->Allocate(p_, p_);
    backend_->Upload(eye.data(), I);
    objective_->CurvatureProduct(Curvature::kHessian, theta_, I, H);
    std::vector<double> h(p_ * p_);
    backend_->Download(H, h.data());
    const double scale = std::max(1.0, MaxAbs(h));
    for (int64_t j = 0; j < p_; ++j) {
      const std::vector<double> gp = Gradient(Shifted(kFdStep, Unit(j))),
                                gm = Gradient(Shifted(-kFdStep, Unit(j)));
      for (int64_t i = 0; i < p_; ++i) {
        ASSERT_NEAR(h[j * p_ + i], (gp[i] - gm[i]) / (2 * kFdStep), kFdTolerance * scale)
            << "H[" << j << "," << i << "]";
        ASSERT_NEAR(h[j * p_ + i], h[i * p_ + j], kRoundingTolerance * scale)
            << "symmetry at " << j << "," << i;
      }
    }
  }

  // vᵀGv for the Gauss-Newton product gv = G v, against (1/n) Σᵢ (Jᵢv)ᵀ ∇²_f lᵢ (Jᵢv) +
  // l2‖v‖², with Jᵢv from central differences of the outputs.
  void ExpectGaussNewtonIsTheJacobianQuadraticForm(const std::vector<double>& v,
                                                   const std::vector<double>& gv) {
    const int64_t n = objective_->num_examples(), k = model_.arch.output_dim;
    Matrix fp = backend_->Allocate(n, k), fm = backend_->Allocate(n, k),
           f0 = backend_->Allocate(n, k);
    objective_->Outputs(Upload(Shifted(kFdStep, v)), fp);
    objective_->Outputs(Upload(Shifted(-kFdStep, v)), fm);
    objective_->Outputs(theta_, f0);
    Matrix jv = backend_->Allocate(n, k), hjv = backend_->Allocate(n, k);
    backend_->Axpby(1.0 / (2 * kFdStep), fp, 0.0, jv);
    backend_->Axpby(-1.0 / (2 * kFdStep), fm, 1.0, jv);
    backend_->LossHessianProduct(spec_.loss, 1.0 / n, f0, jv, hjv);
    const double want = backend_->Dot(jv, hjv) + spec_.l2 * Dot(v, v);
    EXPECT_NEAR(Dot(v, gv), want, kFdTolerance * std::max(1.0, std::abs(want)));
  }

  std::unique_ptr<kernels::Backend<double>> backend_;
  io::Dataset data_;
  io::ModelSpec spec_;
  Model model_;
  std::unique_ptr<Objective<double>> objective_;
  int64_t p_ = 0;
  Matrix theta_;
};

}  // namespace lethe::testing
