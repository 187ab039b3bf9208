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
#include "tests/engine/objective_harness.h"

namespace lethe {
namespace {

using Matrix = kernels::Matrix<double>;
using io::LayerSpec;

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

class NormModel : public testing::ObjectiveHarness<Case> {
 protected:
  void SetUp() override {
    const io::Dataset data = testing::RandomData(GetParam().loss, 9, 4, 3, 42);
    const io::ModelSpec spec = NormSpec(GetParam().loss, GetParam().frozen);
    Model model = testing::RandomModel(spec, data, 7);
    // Running statistics (and a frozen layer's tensors) away from their initial 0 and 1.
    std::mt19937_64 rng(9);
    std::uniform_real_distribution<double> uniform(0.3, 1.7);
    for (double& c : model.arch.constants) c = uniform(rng);
    Start(spec, data, model, ObjectiveOptions{.batch_size = 4});
  }
};

TEST_P(NormModel, StatisticsAndFrozenTensorsAreNotParameters) {
  // θ: layernorm 0 (4 + 4 unless frozen), linear 1 (4·5 + 5), batchnorm 3 (5 + 5),
  // layernorm 5 (5), linear 6 (5·k + k).
  const int64_t k = model_.arch.output_dim;
  EXPECT_EQ(p_, (GetParam().frozen ? 0 : 8) + 25 + 10 + 5 + 6 * k);
  EXPECT_EQ(model_.arch.constants.size(), GetParam().frozen ? 18u : 10u);
}

TEST_P(NormModel, GradientAndPerExampleGradientsMatchFiniteDifferences) {
  ExpectGradientMatchesDifferences();
  ExpectPerExampleGradientsSumToGradient();
}

TEST_P(NormModel, HessianMatchesFiniteDifferencesAndIsSymmetric) {
  ExpectExplicitHessianMatchesDifferences();
}

TEST_P(NormModel, GaussNewtonIsTheJacobianQuadraticForm) {
  const std::vector<double> v = RandomVector(6);
  ExpectGaussNewtonIsTheJacobianQuadraticForm(v, CurvatureTimes(Curvature::kGaussNewton, v));
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
