// The normalisation layers (layernorm, batchnorm in evaluation mode) and dropout: every
// option through the derivative checker (layer_gradient_check.h: value, gradient,
// per-example gradients and dots, Hessian and Gauss-Newton R passes against central
// differences), the forward pass against PyTorch's formula by loops, the initial values
// PyTorch gives, and each key's bad values.
#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/layers/layer.h"
#include "engine/layers/plan.h"
#include "tests/engine/layers/layer_gradient_check.h"

namespace lethe {
namespace {

using io::LayerSpec;

// --- derivatives -----------------------------------------------------------------------

TEST(LayerNormLayer, DerivativesWithWeightAndBias) {
  testing::CheckLayerDerivatives(LayerSpec::Of("layernorm", R"({"weight":"w","bias":"b"})"), {6});
}
TEST(LayerNormLayer, DerivativesWeightOnly) {
  testing::CheckLayerDerivatives(LayerSpec::Of("layernorm", R"({"weight":"w"})"), {5});
}
TEST(LayerNormLayer, DerivativesBiasOnly) {
  testing::CheckLayerDerivatives(LayerSpec::Of("layernorm", R"({"bias":"b"})"), {4});
}
// No parameters: the exact R{δ_in} (second derivatives of x̂ in x) is all there is.
TEST(LayerNormLayer, DerivativesWithoutAffine) {
  testing::CheckLayerDerivatives(LayerSpec::Of("layernorm"), {7});
}
// An image: the whole [C, H, W] example is normalised, γ and β have its shape; a large ε.
TEST(LayerNormLayer, DerivativesOnImagesWithEps) {
  testing::CheckLayerDerivatives(
      LayerSpec::Of("layernorm", R"({"weight":"w","bias":"b","eps":0.25})"), {2, 3, 2});
}
// Frozen: γ and β are constants (no gradient, no direction), δ_in and R{δ_in} go through them.
TEST(LayerNormLayer, DerivativesFrozen) {
  testing::CheckLayerDerivatives(
      LayerSpec::Of("layernorm", R"({"weight":"w","bias":"b","frozen":true})"), {5});
}

TEST(BatchNormLayer, DerivativesOnVectors) {
  testing::CheckLayerDerivatives(LayerSpec::Of("batchnorm", R"({"weight":"w","bias":"b"})"), {6});
}
TEST(BatchNormLayer, DerivativesOnImages) {
  testing::CheckLayerDerivatives(LayerSpec::Of("batchnorm", R"({"weight":"w","bias":"b"})"),
                                 {3, 2, 3});
}
TEST(BatchNormLayer, DerivativesWeightOnlyOnImages) {
  testing::CheckLayerDerivatives(LayerSpec::Of("batchnorm", R"({"weight":"w","eps":0.5})"),
                                 {2, 3, 1});
}
TEST(BatchNormLayer, DerivativesBiasOnly) {
  testing::CheckLayerDerivatives(LayerSpec::Of("batchnorm", R"({"bias":"b"})"), {2, 2, 2});
}
TEST(BatchNormLayer, DerivativesWithoutAffine) {
  testing::CheckLayerDerivatives(LayerSpec::Of("batchnorm"), {2, 1, 3});
}
TEST(BatchNormLayer, DerivativesFrozen) {
  testing::CheckLayerDerivatives(
      LayerSpec::Of("batchnorm", R"({"weight":"w","bias":"b","frozen":true})"), {3, 2, 2});
}

TEST(DropoutLayer, DerivativesAreTheIdentity) {
  testing::CheckLayerDerivatives(LayerSpec::Of("dropout", R"({"p":0.5})"), {4});
  testing::CheckLayerDerivatives(LayerSpec::Of("dropout"), {2, 2, 3});
}

// --- values ------------------------------------------------------------------------------

// One layer alone on `in`, its θ and constants given, forward on x: y (count × out).
std::vector<double> ForwardOf(const LayerSpec& spec, const Shape& in,
                              const std::vector<double>& theta,
                              const std::vector<double>& constants, const std::vector<double>& x) {
  io::ModelSpec model;
  model.loss = LossKind::kMse;
  model.layers = {spec};
  model.input = in;
  ArchitectureSource source;
  source.one_layer_test = true;
  const Architecture arch = Architecture::Build(model, source, "test");
  EXPECT_EQ(static_cast<size_t>(arch.num_params), theta.size());
  EXPECT_EQ(arch.constants.size(), constants.size());
  auto be = kernels::MakeBackend<double>({.threads = 1});
  auto layer = layers::MakeLayer<double>(arch.layers[0]);
  const int64_t width = ShapeSize(in), n = static_cast<int64_t>(x.size()) / width;
  layer->Allocate(*be, n);
  auto up = [&](const std::vector<double>& v, int64_t rows, int64_t cols) {
    kernels::Matrix<double> m = be->Allocate(rows, cols);
    if (!v.empty()) be->Upload(v.data(), m);
    return m;
  };
  const auto T = up(theta, 1, std::max<int64_t>(1, theta.size()));
  const auto K = up(constants, 1, std::max<int64_t>(1, constants.size()));
  const layers::Pass<double> pass{
      .backend = *be,
      .theta = T,
      .constants = K,
      .count = n,
      .scratch = be->Allocate(n, std::max<int64_t>(1, layer->ScratchWidth()))};
  kernels::Matrix<double> Y = be->Allocate(n, width);
  layer->Forward(pass, up(x, n, width), Y);
  std::vector<double> y(Y.size());
  be->Download(Y, y.data());
  return y;
}

// Same arithmetic in another order: a few ulp.
constexpr double kFormulaTolerance = 1e-13;

TEST(LayerNormLayer, ForwardIsPyTorchsFormula) {
  const int64_t n = 3, d = 5;
  const double eps = 1e-3;
  std::vector<double> x(n * d), gamma(d), beta(d);
  for (int64_t i = 0; i < n * d; ++i) x[i] = std::sin(1.7 * i) * (1 + i % 4);
  for (int64_t j = 0; j < d; ++j) gamma[j] = 0.5 + 0.3 * j, beta[j] = 0.1 * j - 0.2;
  std::vector<double> theta = gamma;
  theta.insert(theta.end(), beta.begin(), beta.end());
  const auto y = ForwardOf(LayerSpec::Of("layernorm", R"({"weight":"w","bias":"b","eps":0.001})"),
                           {d}, theta, {}, x);
  for (int64_t i = 0; i < n; ++i) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < d; ++j) mu += x[i * d + j] / d;
    for (int64_t j = 0; j < d; ++j) var += (x[i * d + j] - mu) * (x[i * d + j] - mu) / d;
    for (int64_t j = 0; j < d; ++j)
      EXPECT_NEAR(y[i * d + j], (x[i * d + j] - mu) / std::sqrt(var + eps) * gamma[j] + beta[j],
                  kFormulaTolerance);
  }
}

TEST(BatchNormLayer, ForwardIsPyTorchsEvaluationFormulaPerChannel) {
  const int64_t n = 2, C = 3, P = 4;  // [C, 2, 2] images
  std::vector<double> x(n * C * P), theta(2 * C), constants(2 * C);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.9 * i) * 2;
  for (int64_t c = 0; c < C; ++c) {
    theta[c] = 1.5 - 0.5 * c;      // weight
    theta[C + c] = 0.25 * c;       // bias
    constants[c] = 0.3 * c - 0.1;  // running_mean
    constants[C + c] = 0.5 + c;    // running_var
  }
  const auto y = ForwardOf(LayerSpec::Of("batchnorm", R"({"weight":"w","bias":"b"})"), {C, 2, 2},
                           theta, constants, x);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < P; ++p) {
        const int64_t k = (i * C + c) * P + p;
        EXPECT_NEAR(
            y[k],
            (x[k] - constants[c]) / std::sqrt(constants[C + c] + 1e-5) * theta[c] + theta[C + c],
            kFormulaTolerance)
            << "example " << i << " channel " << c << " position " << p;
      }
}

// --- tensors, initial values ----------------------------------------------------------

TEST(BatchNormLayer, StatisticsAreFixedTensorsWithDefaultNamesAndPyTorchsInitialValues) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.input = {2, 3, 3};
  spec.layers = {LayerSpec::Of("batchnorm", R"({"weight":"bn.weight","bias":"bn.bias"})"),
                 LayerSpec::Of("layernorm", R"({"weight":"ln.weight","bias":"ln.bias"})")};
  ArchitectureSource source;
  source.one_layer_test = true;
  Architecture arch = Architecture::Build(spec, source, "test");
  const std::vector<TensorInfo>& bn = arch.layers[0].tensors;
  ASSERT_EQ(bn.size(), 4u);
  EXPECT_EQ(bn[2].name, "0.running_mean");
  EXPECT_EQ(bn[3].name, "0.running_var");
  EXPECT_TRUE(bn[0].trainable && bn[1].trainable);
  EXPECT_FALSE(bn[2].trainable || bn[3].trainable);
  EXPECT_EQ(arch.num_params, 2 + 2 + 18 + 18);  // γ, β per channel; LayerNorm's [2, 3, 3] each
  EXPECT_EQ(arch.constants.size(), 4u);
  EXPECT_EQ(arch.layers[1].tensors[0].shape, (Shape{2, 3, 3}));
  // The spec written back names the statistics.
  EXPECT_NE(arch.spec.layers[0].keys.find("\"running_var\":\"0.running_var\""), std::string::npos)
      << arch.spec.layers[0].keys;

  std::vector<double> theta(arch.num_params, -7.0);
  layers::Initializer init(1, theta, arch.constants);
  for (const LayerShape& l : arch.layers) layers::FindLayerType(l.type())->init(l, init);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(theta[i], 1.0);          // batchnorm weight
  for (int i = 2; i < 4; ++i) EXPECT_EQ(theta[i], 0.0);          // batchnorm bias
  for (int i = 4; i < 22; ++i) EXPECT_EQ(theta[i], 1.0);         // layernorm weight
  for (int i = 22; i < 40; ++i) EXPECT_EQ(theta[i], 0.0);        // layernorm bias
  EXPECT_EQ(arch.constants, (std::vector<double>{0, 0, 1, 1}));  // running mean 0, var 1
}

// --- bad keys ----------------------------------------------------------------------------

void ExpectRefused(const std::string& type, const std::string& keys, const Shape& in,
                   const std::string& message) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.input = in;
  spec.layers = {LayerSpec::Of(type, keys), LayerSpec::Linear("head.weight", "", 1)};
  try {
    Architecture::Build(spec, {}, "spec.json");
    ADD_FAILURE() << type << " " << keys << " was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos)
        << "got: " << e.what() << "\nwanted: " << message;
    EXPECT_NE(std::string(e.what()).find("spec.json: layer 0 (" + type + ")"), std::string::npos)
        << e.what();
  }
}

TEST(NormLayers, BadKeysAreOneClearError) {
  ExpectRefused("layernorm", R"({"eps":0})", {4}, "\"eps\" = 0: must be > 0");
  ExpectRefused("layernorm", R"({"eps":-1e-5})", {4}, "must be > 0");
  ExpectRefused("layernorm", R"({"eps":"small"})", {4}, "\"eps\" must be a number");
  ExpectRefused("layernorm", R"({"weight":""})", {4}, "\"weight\" must not be empty");
  ExpectRefused("layernorm", R"({"gamma":"g"})", {4}, "unknown key \"gamma\"");
  ExpectRefused("batchnorm", R"({"eps":0})", {4}, "must be > 0");
  ExpectRefused("batchnorm", R"({"momentum":0.1})", {4}, "unknown key \"momentum\"");
  ExpectRefused("batchnorm", R"({"running_mean":3})", {4}, "\"running_mean\" must be a string");
  ExpectRefused("batchnorm", R"({"weight":"w","running_mean":"w"})", {4}, "is used twice");
  ExpectRefused("dropout", R"({"p":1})", {4}, "\"p\" = 1: must be in [0, 1)");
  ExpectRefused("dropout", R"({"p":-0.1})", {4}, "must be in [0, 1)");
  ExpectRefused("dropout", R"({"q":0.5})", {4}, "unknown key \"q\"");
  ExpectRefused("dropout", R"({"frozen":true})", {4},
                "\"frozen\": true on a layer without parameters");
}

TEST(NormLayers, BatchNormRefusesOtherRanks) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.input = {2, 3};
  spec.layers = {LayerSpec::Of("batchnorm")};
  ArchitectureSource source;
  source.one_layer_test = true;
  EXPECT_THROW(
      {
        try {
          Architecture::Build(spec, source, "spec.json");
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("takes features [C] or images [C, H, W]"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
}

}  // namespace
}  // namespace lethe
