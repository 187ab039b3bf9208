// Every derivative the engine computes, against central finite differences, for every
// activation and loss: gradient, per-example gradients, Hessian-vector products (and
// against an explicit Hessian), Gauss-Newton products, and symmetry of both.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/backend.h"
#include "tests/engine/objective_harness.h"

namespace lethe {
namespace {

using Matrix = kernels::Matrix<double>;
using testing::kFdStep;
using testing::kFdTolerance;
using testing::kRoundingTolerance;

// The model around the activation: an MLP, one with a residual block (or a residual block
// nested in another), or an MLP whose first layer is frozen.
enum class Shape { kMlp, kResidual, kNestedResidual, kFrozen };

struct Case {
  LossKind loss;
  Activation act;
  int hidden;
  Shape shape = Shape::kMlp;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  static const char* kShapes[] = {"", "_residual", "_nested_residual", "_frozen"};
  return std::string(Name(info.param.loss)) + "_" + Name(info.param.act) + "_h" +
         std::to_string(info.param.hidden) + kShapes[static_cast<int>(info.param.shape)];
}

class DerivativeTest : public testing::ObjectiveHarness<Case> {
 protected:
  void SetUp() override {
    const Case c = GetParam();
    const io::Dataset data = testing::RandomData(c.loss, 9, 4, 3, 42);
    io::ModelSpec spec;
    switch (c.shape) {
      case Shape::kMlp: spec = testing::MlpSpec(c.loss, c.act, c.hidden, 0.05); break;
      case Shape::kResidual:
      case Shape::kNestedResidual:
        spec = testing::ResidualSpec(c.loss, c.act, c.hidden, 0.05,
                                     c.shape == Shape::kNestedResidual);
        break;
      case Shape::kFrozen:
        spec = testing::FrozenFirstLayerSpec(c.loss, c.act, c.hidden, 0.05);
        break;
    }
    // batch_size 4 < n, so the batching (including a partial last batch) is exercised;
    // group_elements 48 makes a curvature product of many directions run in groups of
    // 48 / (3 outputs of the first linear layer × 4) = 4 directions: H · I below takes
    // several groups and a partial last one.
    Start(spec, data, testing::RandomModel(spec, data, 7),
          ObjectiveOptions{.batch_size = 4, .group_elements = 48});
  }
};

TEST_P(DerivativeTest, GradientMatchesFiniteDifferences) { ExpectGradientMatchesDifferences(); }

TEST_P(DerivativeTest, PerExampleGradientsMatchFiniteDifferencesAndSumToGradient) {
  const int64_t n = objective_->num_examples();
  const std::vector<double> rows = ExpectPerExampleGradientsSumToGradient();
  // Each row against differences of that example's loss.
  Matrix losses = backend_->Allocate(n, 1);
  auto loss_of = [&](const std::vector<double>& theta, int64_t i) {
    objective_->PerExampleLosses(Upload(theta), losses);
    return Download(losses)[i];
  };
  for (int64_t i : {int64_t{0}, n - 1}) {
    std::vector<double> fd(p_);
    for (int64_t j = 0; j < p_; ++j)
      fd[j] = (loss_of(Shifted(kFdStep, Unit(j)), i) - loss_of(Shifted(-kFdStep, Unit(j)), i)) /
              (2 * kFdStep);
    ExpectClose(std::vector<double>(rows.begin() + i * p_, rows.begin() + (i + 1) * p_), fd,
                kFdTolerance, "per-example gradient");
  }
}

TEST_P(DerivativeTest, HessianVectorProductMatchesFiniteDifferencesOfGradient) {
  const std::vector<double> v = RandomVector(3);
  const std::vector<double> hv = CurvatureTimes(Curvature::kHessian, v);
  const std::vector<double> gp = Gradient(Shifted(kFdStep, v)), gm = Gradient(Shifted(-kFdStep, v));
  std::vector<double> fd(p_);
  for (int64_t j = 0; j < p_; ++j) fd[j] = (gp[j] - gm[j]) / (2 * kFdStep);
  ExpectClose(hv, fd, kFdTolerance, "Hv");
}

TEST_P(DerivativeTest, HessianIsSymmetricAndMatchesExplicitHessian) {
  const std::vector<double> u = RandomVector(4), v = RandomVector(5);
  const double uHv = Dot(u, CurvatureTimes(Curvature::kHessian, v));
  const double vHu = Dot(v, CurvatureTimes(Curvature::kHessian, u));
  EXPECT_NEAR(uHv, vHu, kRoundingTolerance * std::max(1.0, std::abs(uHv)));
  ExpectExplicitHessianMatchesDifferences();
}

TEST_P(DerivativeTest, GaussNewtonProductMatchesJacobianQuadraticForm) {
  // vᵀGv = (1/n) Σᵢ (Jᵢv)ᵀ ∇²_f lᵢ (Jᵢv) + l2‖v‖², with Jᵢv from differences of the outputs.
  const std::vector<double> v = RandomVector(6), u = RandomVector(8);
  const std::vector<double> gv = CurvatureTimes(Curvature::kGaussNewton, v);
  ExpectGaussNewtonIsTheJacobianQuadraticForm(v, gv);
  const double uGv = Dot(u, gv), vGu = Dot(v, CurvatureTimes(Curvature::kGaussNewton, u));
  EXPECT_NEAR(uGv, vGu, kRoundingTolerance * std::max(1.0, std::abs(uGv)));
  // For a model linear in θ (no hidden layer) the Gauss-Newton matrix is the Hessian.
  if (GetParam().hidden == 0)
    ExpectClose(gv, CurvatureTimes(Curvature::kHessian, v), kRoundingTolerance, "G = H");
}

// Curvature products keep their forward pass for the next product at the same θ
// (ObjectiveOptions::cache_elements). Against an objective that never keeps it: the same
// θ twice, a switch of curvature and back, a gradient at another point in between (its
// forward pass overwrites the workspace), and θ changed in place in the same buffer.
TEST_P(DerivativeTest, CurvatureProductsReuseTheForwardPassOnlyAtTheSameTheta) {
  Objective<double> uncached(
      *backend_, model_.arch, UploadData(*backend_, data_),
      ObjectiveOptions{.batch_size = 4, .group_elements = 48, .cache_elements = 0});
  const std::vector<double> v = RandomVector(11), other = Shifted(0.3, RandomVector(12));
  Matrix theta = Upload(model_.theta), V = Upload(v);
  Matrix got = backend_->Allocate(1, p_), want = backend_->Allocate(1, p_);
  auto check = [&](Curvature c, const char* what) {
    objective_->CurvatureProduct(c, theta, V, got);
    uncached.CurvatureProduct(c, theta, V, want);
    ExpectClose(Download(got), Download(want), 1e-14, what);
  };
  check(Curvature::kHessian, "first product");
  check(Curvature::kHessian, "same θ again");
  check(Curvature::kGaussNewton, "Gauss-Newton at the same θ");
  check(Curvature::kHessian, "Hessian again");
  Gradient(other);
  check(Curvature::kHessian, "after a gradient elsewhere");
  backend_->Upload(other.data(), theta);  // the same buffer, new values
  check(Curvature::kHessian, "θ changed in place");
  check(Curvature::kGaussNewton, "θ changed in place, Gauss-Newton");
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (LossKind loss : {LossKind::kCrossEntropy, LossKind::kLogistic, LossKind::kMse}) {
    cases.push_back({loss, Activation::kIdentity, 0});
    for (Activation act : {Activation::kIdentity, Activation::kRelu, Activation::kTanh,
                           Activation::kSigmoid, Activation::kGelu, Activation::kSoftplus})
      cases.push_back({loss, act, 3});
    cases.push_back({loss, Activation::kTanh, 3, Shape::kResidual});
    cases.push_back({loss, Activation::kSoftplus, 3, Shape::kNestedResidual});
    cases.push_back({loss, Activation::kTanh, 3, Shape::kFrozen});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllLayersAndLosses, DerivativeTest, ::testing::ValuesIn(AllCases()),
                         CaseName);

// f32 computes the same derivatives to single precision.
TEST(DerivativeF32, MatchesF64) {
  const io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 50, 6, 4, 1);
  const io::ModelSpec spec = testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 5, 0.01);
  const Model model = testing::RandomModel(spec, data, 2);
  auto b64 = kernels::MakeBackend<double>({});
  auto b32 = kernels::MakeBackend<float>({});
  Objective<double> o64(*b64, model.arch, UploadData(*b64, data));
  Objective<float> o32(*b32, model.arch, UploadData(*b32, data));
  const int64_t p = model.arch.num_params;
  std::vector<float> theta32(model.theta.begin(), model.theta.end());
  std::vector<double> theta64(theta32.begin(), theta32.end());  // the same rounded point
  auto t64 = b64->Allocate(1, p);
  auto t32 = b32->Allocate(1, p);
  b64->Upload(theta64.data(), t64);
  b32->Upload(theta32.data(), t32);
  auto g64 = b64->Allocate(1, p);
  auto g32 = b32->Allocate(1, p);
  const double f64 = o64.ValueAndGradient(t64, g64);
  const double f32 = o32.ValueAndGradient(t32, g32);
  EXPECT_NEAR(f32, f64, 1e-5 * std::abs(f64));  // f32: ~1e-7 per op, ~1e-5 after sums
  std::vector<double> h64(p);
  std::vector<float> h32(p);
  b64->Download(g64, h64.data());
  b32->Download(g32, h32.data());
  double gmax = 0;
  for (double x : h64) gmax = std::max(gmax, std::abs(x));
  for (int64_t i = 0; i < p; ++i) EXPECT_NEAR(h32[i], h64[i], 1e-5 * gmax);
}

}  // namespace
}  // namespace lethe
