// Models with normalisation layers through the whole objective (engine/objective.h): a
// layernorm as the first layer with parameters (R{x} = 0 below it), a batchnorm with
// non-trivial running statistics between hidden layers, dropout, and a frozen layernorm.
// Gradient, per-example gradients, Hessian-vector products and the explicit Hessian
// against central differences, and the Gauss-Newton quadratic form against differences of
// the outputs; the statistics stay out of θ.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/backend.h"
#include "tests/engine/test_problems.h"

namespace lethe {
namespace {

using Matrix = kernels::Matrix<double>;
using io::LayerSpec;

// As tests/engine/test_derivatives.cc: central differences with ε = 1e-5 are ~1e-10
// relative on these O(1) problems; identities hold to rounding.
constexpr double kFdStep = 1e-5;
constexpr double kFdTolerance = 1e-7;
constexpr double kRoundingTolerance = 1e-12;

io::ModelSpec NormSpec(LossKind loss, bool frozen_layernorm) {
  io::ModelSpec spec;
  spec.loss = loss;
  spec.l2 = 0.03;
  spec.layers = {
      LayerSpec::Of("layernorm", frozen_layernorm
                                     ? R"({"weight":"0.weight","bias":"0.bias","frozen":true})"
                                     : R"({"weight":"0.weight","bias":"0.bias"})"),
      LayerSpec::Linear("1.weight", "1.bias", 5),
      LayerSpec::Of("tanh"),
      LayerSpec::Of("batchnorm", R"({"weight":"3.weight","bias":"3.bias"})"),
      LayerSpec::Of("dropout", R"({"p":0.2})"),
      LayerSpec::Of("layernorm", R"({"weight":"5.weight"})"),
      LayerSpec::Linear("6.weight", "6.bias", -1)};
  return spec;
}

struct Case {
  LossKind loss;
  bool frozen;
};

class NormModel : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    backend_ = kernels::MakeBackend<double>({});
    data_ = testing::RandomData(GetParam().loss, 9, 4, 3, 42);
    spec_ = NormSpec(GetParam().loss, GetParam().frozen);
    model_ = testing::RandomModel(spec_, data_, 7);
    // Running statistics (and a frozen layer's tensors) away from their initial 0 and 1.
    std::mt19937_64 rng(9);
    std::uniform_real_distribution<double> uniform(0.3, 1.7);
    for (double& c : model_.arch.constants) c = uniform(rng);
    objective_ = std::make_unique<Objective<double>>(
        *backend_, model_.arch, UploadData(*backend_, data_), ObjectiveOptions{.batch_size = 4});
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
  std::vector<double> Shifted(double t, const std::vector<double>& v) {
    std::vector<double> out = model_.theta;
    for (int64_t i = 0; i < p_; ++i) out[i] += t * v[i];
    return out;
  }
  std::vector<double> Gradient(const std::vector<double>& theta) {
    Matrix g = backend_->Allocate(1, p_);
    objective_->ValueAndGradient(Upload(theta), g);
    return Download(g);
  }
  static void ExpectClose(const std::vector<double>& got, const std::vector<double>& want,
                          double tol, const char* what) {
    ASSERT_EQ(got.size(), want.size());
    double scale = 1;
    for (double w : want) scale = std::max(scale, std::abs(w));
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

TEST_P(NormModel, StatisticsAndFrozenTensorsAreNotParameters) {
  // θ: layernorm 0 (4 + 4 unless frozen), linear 1 (4·5 + 5), batchnorm 3 (5 + 5),
  // layernorm 5 (5), linear 6 (5·k + k).
  const int64_t k = model_.arch.output_dim;
  EXPECT_EQ(p_, (GetParam().frozen ? 0 : 8) + 25 + 10 + 5 + 6 * k);
  EXPECT_EQ(model_.arch.constants.size(), GetParam().frozen ? 18u : 10u);
}

TEST_P(NormModel, GradientAndPerExampleGradientsMatchFiniteDifferences) {
  const std::vector<double> g = Gradient(model_.theta);
  std::vector<double> fd(p_);
  for (int64_t j = 0; j < p_; ++j) {
    std::vector<double> e(p_, 0.0);
    e[j] = 1;
    fd[j] = (objective_->ValueAndGradient(Upload(Shifted(kFdStep, e)), Matrix()) -
             objective_->ValueAndGradient(Upload(Shifted(-kFdStep, e)), Matrix())) /
            (2 * kFdStep);
  }
  ExpectClose(g, fd, kFdTolerance, "gradient");
  const int64_t n = objective_->num_examples();
  Matrix G = backend_->Allocate(n, p_);
  objective_->PerExampleGradients(theta_, 0, n, G);
  const std::vector<double> rows = Download(G);
  std::vector<double> sum(p_, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < p_; ++j) sum[j] += rows[i * p_ + j] / n;
  for (int64_t j = 0; j < p_; ++j) sum[j] += spec_.l2 * model_.theta[j];
  ExpectClose(sum, g, kRoundingTolerance, "(1/n) Σ per-example gradients + l2 θ");
}

TEST_P(NormModel, HessianMatchesFiniteDifferencesAndIsSymmetric) {
  std::vector<double> eye(p_ * p_, 0.0);
  for (int64_t j = 0; j < p_; ++j) eye[j * p_ + j] = 1;
  Matrix I = backend_->Allocate(p_, p_), H = backend_->Allocate(p_, p_);
  backend_->Upload(eye.data(), I);
  objective_->CurvatureProduct(Curvature::kHessian, theta_, I, H);
  const std::vector<double> h = Download(H);
  double scale = 1;
  for (double x : h) scale = std::max(scale, std::abs(x));
  for (int64_t j = 0; j < p_; ++j) {
    std::vector<double> e(p_, 0.0);
    e[j] = 1;
    const std::vector<double> gp = Gradient(Shifted(kFdStep, e)),
                              gm = Gradient(Shifted(-kFdStep, e));
    for (int64_t i = 0; i < p_; ++i) {
      ASSERT_NEAR(h[j * p_ + i], (gp[i] - gm[i]) / (2 * kFdStep), kFdTolerance * scale)
          << "H[" << j << "," << i << "]";
      ASSERT_NEAR(h[j * p_ + i], h[i * p_ + j], kRoundingTolerance * scale)
          << "symmetry at " << j << "," << i;
    }
  }
}

TEST_P(NormModel, GaussNewtonIsTheJacobianQuadraticForm) {
  std::mt19937_64 rng(6);
  std::normal_distribution<double> normal;
  std::vector<double> v(p_);
  for (double& x : v) x = normal(rng);
  Matrix gv = backend_->Allocate(1, p_);
  objective_->CurvatureProduct(Curvature::kGaussNewton, theta_, Upload(v), gv);
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
  double vv = 0, vgv = 0;
  const std::vector<double> g = Download(gv);
  for (int64_t i = 0; i < p_; ++i) vv += v[i] * v[i], vgv += v[i] * g[i];
  const double want = backend_->Dot(jv, hjv) + spec_.l2 * vv;
  EXPECT_NEAR(vgv, want, kFdTolerance * std::max(1.0, std::abs(want)));
}

INSTANTIATE_TEST_SUITE_P(Losses, NormModel,
                         ::testing::Values(Case{LossKind::kCrossEntropy, false},
                                           Case{LossKind::kMse, false},
                                           Case{LossKind::kLogistic, true}),
                         [](const auto& info) {
                           return std::string(Name(info.param.loss)) +
                                  (info.param.frozen ? "_frozen_layernorm" : "");
                         });

}  // namespace
}  // namespace lethe
