// The dense curvature of a linear model (engine/dense_curvature.h) against the same matrix
// formed column by column from curvature-vector products, for every loss, with and without
// a bias, Hessian and Gauss-Newton, f64 and f32; and the direct solver on either form.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/dense_curvature.h"
#include "engine/solvers/direct.h"
#include "engine/solvers/linear_operator.h"
#include "tests/engine/test_problems.h"

namespace lethe {
namespace {

// Both forms sum the same n products per entry in another order: rounding only.
constexpr double kDenseTolerance64 = 1e-12;
// f32: ~1e-7 per operation over n = 37 terms.
constexpr double kDenseTolerance32 = 1e-5;

struct Case {
  LossKind loss;
  bool bias;
  Curvature curvature;
  std::string name() const {
    return std::string(Name(loss)) + (bias ? " with bias" : " without bias") +
           (curvature == Curvature::kHessian ? ", Hessian" : ", Gauss-Newton");
  }
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (LossKind loss : {LossKind::kCrossEntropy, LossKind::kLogistic, LossKind::kMse})
    for (bool bias : {true, false})
      for (Curvature c : {Curvature::kHessian, Curvature::kGaussNewton})
        cases.push_back({loss, bias, c});
  return cases;
}

template <typename T>
std::vector<double> Read(kernels::Backend<T>& be, const kernels::Matrix<T>& m) {
  std::vector<T> host(m.size());
  be.Download(m, host.data());
  return std::vector<double>(host.begin(), host.end());
}

// d = 5 inputs, C = 3 outputs (1 for logistic): the blocks are not square in θ's layout,
// so a swapped block offset or a transposed block puts values in the wrong place.
template <typename T>
void ExpectDenseEqualsProducts(const Case& c, double tolerance) {
  const double damping = 0.3;
  io::Dataset data = testing::RandomData(c.loss, 37, 5, 3, 7);
  io::ModelSpec spec = testing::MlpSpec(c.loss, Activation::kTanh, 0, 0.07);
  if (!c.bias) spec.layers[0] = io::LayerSpec::Linear("0.weight");
  Model model = testing::RandomModel(spec, data, 8);
  auto be = kernels::MakeBackend<T>({});
  // batch_size 16 < n: the products' batching is exercised, the dense form is one pass.
  Objective<T> objective(*be, model.arch, UploadData(*be, data), ObjectiveOptions{16});
  const int64_t p = objective.num_params();
  const int64_t outputs = c.loss == LossKind::kLogistic ? 1 : 3;
  ASSERT_EQ(p, outputs * 5 + (c.bias ? outputs : 0)) << c.name();
  kernels::Matrix<T> theta = be->Allocate(1, p);
  std::vector<T> th(model.theta.begin(), model.theta.end());
  be->Upload(th.data(), theta);

  // Reference: row i = (C + damping·I) e_i.
  CurvatureOperator<T> op(objective, theta, c.curvature, damping);
  kernels::Matrix<T> identity = be->Zeros(p, p), products = be->Allocate(p, p);
  kernels::Matrix<T> ones = be->Allocate(p, 1);
  be->Fill(ones, T(1));
  be->Copy(ones, identity.Diagonal());
  op.Apply(identity, products);

  kernels::Matrix<T> dense = be->Allocate(p, p);
  ASSERT_TRUE(op.FormDense(dense)) << c.name();
  const std::vector<double> ref = Read(*be, products), got = Read(*be, dense);
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < p * p; ++i) {
    worst = std::max(worst, std::fabs(got[i] - ref[i]));
    scale = std::max(scale, std::fabs(ref[i]));
  }
  EXPECT_LE(worst, tolerance * scale)
      << c.name() << ": max |dense − products| " << worst << " of max |entry| " << scale;
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < i; ++j)
      ASSERT_EQ(got[i * p + j], got[j * p + i])
          << c.name() << ": not symmetric at " << i << ", " << j;
}

TEST(DenseCurvature, EqualsProductColumnsF64) {
  for (const Case& c : Cases()) ExpectDenseEqualsProducts<double>(c, kDenseTolerance64);
}

TEST(DenseCurvature, EqualsProductColumnsF32) {
  for (const Case& c : Cases()) ExpectDenseEqualsProducts<float>(c, kDenseTolerance32);
}

TEST(DenseCurvature, DeclinesModelsWithMoreThanOneLinearLayer) {
  io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 20, 5, 3, 9);
  Model model = testing::RandomModel(
      testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 4, 0.01), data, 10);
  auto be = kernels::MakeBackend<double>({});
  Objective<double> objective(*be, model.arch, UploadData(*be, data));
  kernels::Matrix<double> theta = be->Allocate(1, objective.num_params());
  be->Upload(model.theta.data(), theta);
  const int64_t p = objective.num_params();
  kernels::Matrix<double> out = be->Allocate(p, p);
  be->Fill(out, 42.0);
  EXPECT_FALSE(HasDenseCurvature(model.arch));
  EXPECT_FALSE(DenseCurvature(objective, Curvature::kHessian, theta, 0.0, out));
  for (double v : Read(*be, out)) ASSERT_EQ(v, 42.0);  // untouched
}

// The direct solver gives the same solutions from either form of A.
TEST(DenseCurvature, DirectSolveAgreesWithProductForm) {
  io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 50, 5, 3, 11);
  Model model = testing::RandomModel(
      testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 0, 0.01), data, 12);
  auto be = kernels::MakeBackend<double>({});
  Objective<double> objective(*be, model.arch, UploadData(*be, data), ObjectiveOptions{16});
  const int64_t p = objective.num_params();
  kernels::Matrix<double> theta = be->Allocate(1, p);
  be->Upload(model.theta.data(), theta);
  CurvatureOperator<double> op(objective, theta, Curvature::kHessian, 0.0);
  std::vector<double> b(3 * p);
  for (size_t i = 0; i < b.size(); ++i) b[i] = std::sin(1.7 * double(i));
  kernels::Matrix<double> B = be->Allocate(3, p), X1 = be->Allocate(3, p), X2 = be->Allocate(3, p);
  be->Upload(b.data(), B);
  DirectOptions dense, products;
  products.dense_form = false;
  const SolveSummary s1 = DirectSolve(op, B, X1, dense);
  const SolveSummary s2 = DirectSolve(op, B, X2, products);
  ASSERT_EQ(s1.termination, Termination::kConverged);
  ASSERT_EQ(s2.termination, Termination::kConverged);
  EXPECT_LE(s1.relative_residual, 1e-12);
  const std::vector<double> x1 = Read(*be, X1), x2 = Read(*be, X2);
  double diff = 0, norm = 0;
  for (size_t i = 0; i < x1.size(); ++i)
    diff = std::max(diff, std::fabs(x1[i] - x2[i])), norm = std::max(norm, std::fabs(x2[i]));
  EXPECT_LE(diff, 1e-10 * norm);
}

}  // namespace
}  // namespace lethe
