// Every derivative the engine computes, against central finite differences, for every
// activation and loss: gradient, per-example gradients, Hessian-vector products (and
// against an explicit Hessian), Gauss-Newton products, and symmetry of both.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/backend.h"
#include "tests/engine/test_problems.h"

namespace lethe {
namespace {

using Matrix = kernels::Matrix<double>;

// Central differences have error O(ε²·f''') + O(ε_mach·f/ε): with ε = 1e-5 both are
// ~1e-10 relative on these O(1) problems, so 1e-7 catches any missing term or sign.
constexpr double kFdStep = 1e-5;
constexpr double kFdTolerance = 1e-7;
// Identities that hold exactly up to rounding (symmetry, sums of per-example terms).
constexpr double kRoundingTolerance = 1e-12;

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

class DerivativeTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case c = GetParam();
    backend_ = kernels::MakeBackend<double>({});
    data_ = testing::RandomData(c.loss, 9, 4, 3, 42);
    switch (c.shape) {
      case Shape::kMlp: spec_ = testing::MlpSpec(c.loss, c.act, c.hidden, 0.05); break;
      case Shape::kResidual:
      case Shape::kNestedResidual:
        spec_ = testing::ResidualSpec(c.loss, c.act, c.hidden, 0.05,
                                      c.shape == Shape::kNestedResidual);
        break;
      case Shape::kFrozen:
        spec_ = testing::FrozenFirstLayerSpec(c.loss, c.act, c.hidden, 0.05);
        break;
    }
    model_ = testing::RandomModel(spec_, data_, 7);
    // batch_size 4 < n, so the batching (including a partial last batch) is exercised;
    // group_elements 48 makes a curvature product of many directions run in groups of
    // 48 / (3 outputs of the first linear layer × 4) = 4 directions: H · I below takes
    // several groups and a partial last one.
    objective_ = std::make_unique<Objective<double>>(
        *backend_, model_.arch, UploadData(*backend_, data_),
        ObjectiveOptions{.batch_size = 4, .group_elements = 48});
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

  std::unique_ptr<kernels::Backend<double>> backend_;
  io::Dataset data_;
  io::ModelSpec spec_;
  Model model_;
  std::unique_ptr<Objective<double>> objective_;
  int64_t p_ = 0;
  Matrix theta_;
};

TEST_P(DerivativeTest, GradientMatchesFiniteDifferences) {
  const std::vector<double> g = Gradient(model_.theta);
  std::vector<double> fd(p_);
  for (int64_t j = 0; j < p_; ++j) {
    std::vector<double> e(p_, 0.0);
    e[j] = 1;
    fd[j] = (Value(Shifted(kFdStep, e)) - Value(Shifted(-kFdStep, e))) / (2 * kFdStep);
  }
  ExpectClose(g, fd, kFdTolerance, "gradient");
}

TEST_P(DerivativeTest, PerExampleGradientsMatchFiniteDifferencesAndSumToGradient) {
  const int64_t n = objective_->num_examples();
  Matrix G = backend_->Allocate(n, p_);
  objective_->PerExampleGradients(theta_, 0, n, G);
  std::vector<double> rows(n * p_);
  backend_->Download(G, rows.data());
  // (1/n) Σ ∇lᵢ + l2 θ = ∇L
  std::vector<double> sum(p_, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < p_; ++j) sum[j] += rows[i * p_ + j] / n;
  for (int64_t j = 0; j < p_; ++j) sum[j] += spec_.l2 * model_.theta[j];
  ExpectClose(sum, Gradient(model_.theta), kRoundingTolerance, "sum of per-example gradients");
  // Each row against differences of that example's loss.
  Matrix losses = backend_->Allocate(n, 1);
  auto loss_of = [&](const std::vector<double>& theta, int64_t i) {
    objective_->PerExampleLosses(Upload(theta), losses);
    return Download(losses)[i];
  };
  for (int64_t i : {int64_t{0}, n - 1}) {
    std::vector<double> fd(p_);
    for (int64_t j = 0; j < p_; ++j) {
      std::vector<double> e(p_, 0.0);
      e[j] = 1;
      fd[j] = (loss_of(Shifted(kFdStep, e), i) - loss_of(Shifted(-kFdStep, e), i)) / (2 * kFdStep);
    }
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
  // All p columns at once (exercises several right-hand sides per pass): H · I.
  std::vector<double> eye(p_ * p_, 0.0);
  for (int64_t j = 0; j < p_; ++j) eye[j * p_ + j] = 1;
  Matrix I = backend_->Allocate(p_, p_), H = backend_->Allocate(p_, p_);
  backend_->Upload(eye.data(), I);
  objective_->CurvatureProduct(Curvature::kHessian, theta_, I, H);
  std::vector<double> h(p_ * p_);
  backend_->Download(H, h.data());
  for (int64_t j = 0; j < p_; ++j) {
    std::vector<double> e(p_, 0.0);
    e[j] = 1;
    const std::vector<double> gp = Gradient(Shifted(kFdStep, e)),
                              gm = Gradient(Shifted(-kFdStep, e));
    for (int64_t i = 0; i < p_; ++i)
      ASSERT_NEAR(h[j * p_ + i], (gp[i] - gm[i]) / (2 * kFdStep),
                  kFdTolerance * std::max(1.0, MaxAbs(h)))
          << "H[" << j << "," << i << "]";
  }
}

TEST_P(DerivativeTest, GaussNewtonProductMatchesJacobianQuadraticForm) {
  // vᵀGv = (1/n) Σᵢ (Jᵢv)ᵀ ∇²_f lᵢ (Jᵢv) + l2‖v‖², with Jᵢv from differences of the outputs.
  const std::vector<double> v = RandomVector(6), u = RandomVector(8);
  const std::vector<double> gv = CurvatureTimes(Curvature::kGaussNewton, v);
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
