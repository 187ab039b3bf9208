// conv2d (engine/layers/conv2d.h): every pass against central finite differences through
// the layer checker, for each option off its default (stride, padding, dilation, a
// non-square kernel and input, several channels, bias or not, a one-channel [H, W] input,
// frozen); the forward pass against PyTorch's definition written out as loops; the KFC
// factors against their definition; PyTorch's initialisation bound; the spec's errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/architecture.h"
#include "engine/layers/conv2d.h"
#include "engine/layers/layer.h"
#include "tests/engine/layers/layer_gradient_check.h"

namespace lethe {
namespace {

io::LayerSpec Conv(const std::string& keys) { return io::LayerSpec::Of("conv2d", keys); }

// KFC is exact only with one output position (then it is linear's K-FAC on the one patch).
testing::LayerCheckOptions Spatial() {
  testing::LayerCheckOptions o;
  o.count = 3;
  o.kronecker_exact = false;
  return o;
}

TEST(Conv2dLayer, Derivatives3x3WithBias) {
  testing::CheckLayerDerivatives(
      Conv(R"({"weight": "0.weight", "bias": "0.bias", "out": 2, "kernel": 3})"), {1, 5, 5}, -1,
      Spatial());
}
TEST(Conv2dLayer, DerivativesStridePaddingNonSquare) {
  testing::CheckLayerDerivatives(
      Conv(R"({"bias": "0.bias", "out": 3, "kernel": [3, 2], "stride": [2, 1], "padding": 1})"),
      {2, 6, 7}, -1, Spatial());
}
TEST(Conv2dLayer, DerivativesDilationPaddingWithoutBias) {
  testing::CheckLayerDerivatives(Conv(R"({"out": 2, "kernel": 3, "padding": 2, "dilation": 2})"),
                                 {3, 7, 6}, -1, Spatial());
}
TEST(Conv2dLayer, DerivativesEveryOptionAPair) {
  testing::CheckLayerDerivatives(Conv(R"({"bias": "b", "out": 2, "kernel": [2, 4],
      "stride": [2, 3], "padding": [1, 2], "dilation": [2, 1]})"),
                                 {2, 6, 10}, -1, Spatial());
}
TEST(Conv2dLayer, DerivativesOneChannelImageWithoutChannelDimension) {
  testing::CheckLayerDerivatives(Conv(R"({"bias": "b", "out": 2, "kernel": 2, "stride": 2})"),
                                 {5, 4}, -1, Spatial());
}
// One output position: KFC is linear's K-FAC on the single patch, exact for one example.
TEST(Conv2dLayer, DerivativesOnePositionAndExactKfac) {
  testing::CheckLayerDerivatives(Conv(R"({"bias": "b", "out": 3, "kernel": [3, 4]})"), {2, 3, 4});
  testing::CheckLayerDerivatives(Conv(R"({"out": 2, "kernel": 2, "padding": 1, "stride": 3})"),
                                 {1, 2, 2});
}
TEST(Conv2dLayer, DerivativesFrozen) {
  testing::CheckLayerDerivatives(
      Conv(R"({"bias": "b", "out": 2, "kernel": 3, "padding": 1, "frozen": true})"), {2, 4, 5}, -1,
      Spatial());
}

// The planned layer of `keys` on input `in`, alone in a model.
Architecture Plan(const std::string& keys, const Shape& in) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.layers = {Conv(keys)};
  spec.input = in;
  ArchitectureSource source;
  source.one_layer_test = true;
  return Architecture::Build(spec, source, "test");
}

// PyTorch's conv2d, z[o, oh, ow] = b[o] + Σ_{c, ki, kj} W[o, c, ki, kj] · x[c, oh·s − p + ki·d,
// ow·s − p + kj·d], zero outside the image, against the layer's forward pass.
TEST(Conv2dLayer, ForwardIsTorchConv2d) {
  const Architecture arch = Plan(
      R"({"weight": "w", "bias": "b", "out": 3, "kernel": [3, 2], "stride": [2, 1],
          "padding": [1, 2], "dilation": [1, 2]})",
      {2, 5, 6});
  const LayerShape& shape = arch.layers[0];
  const int64_t C = 2, H = 5, W = 6, O = 3, kh = 3, kw = 2;
  const int64_t OH = (H + 2 - 2 - 1) / 2 + 1, OW = (W + 4 - 2 - 1) / 1 + 1;
  ASSERT_EQ(shape.out, (Shape{O, OH, OW}));
  ASSERT_EQ(shape.tensors[0].shape, (Shape{O, C, kh, kw}));
  const int64_t n = 2, p = arch.num_params;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> x(n * C * H * W), theta(p);
  for (double& v : x) v = u(rng);
  for (double& v : theta) v = u(rng);
  auto be = kernels::MakeBackend<double>({});
  auto layer = layers::MakeLayer<double>(shape);
  layer->Allocate(*be, n);
  auto X = be->Allocate(n, C * H * W), theta_m = be->Allocate(1, p),
       Y = be->Allocate(n, O * OH * OW);
  auto constants = be->Allocate(1, 1), scratch = be->Allocate(n, 1);
  be->Upload(x.data(), X);
  be->Upload(theta.data(), theta_m);
  layer->Forward(
      {.backend = *be, .theta = theta_m, .constants = constants, .count = n, .scratch = scratch}, X,
      Y);
  std::vector<double> y(n * O * OH * OW);
  be->Download(Y, y.data());
  const double* w = theta.data() + shape.tensors[0].offset;
  const double* b = theta.data() + shape.tensors[1].offset;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double z = b[o];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ki = 0; ki < kh; ++ki)
              for (int64_t kj = 0; kj < kw; ++kj) {
                const int64_t h = oh * 2 - 1 + ki * 1, v = ow * 1 - 2 + kj * 2;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                z += w[((o * C + c) * kh + ki) * kw + kj] * x[((i * C + c) * H + h) * W + v];
              }
          EXPECT_NEAR(y[((i * O + o) * OH + oh) * OW + ow], z, 1e-13) << i << o << oh << ow;
        }
}

// S = Σᵢ Σ_t ã ãᵀ (ã = [patch; 1]) and Γ = (1/P) Σᵢ Σ_t δ_{i,t} (Aδ)_{i,t}ᵀ, from loops.
TEST(Conv2dLayer, KfcFactorsAreTheirDefinition) {
  const Architecture arch =
      Plan(R"({"bias": "b", "out": 2, "kernel": 2, "padding": 1})", {2, 3, 3});
  const LayerShape& shape = arch.layers[0];
  const int64_t n = 2, C = 2, H = 3, W = 3, O = 2, OH = 4, OW = 4, P = OH * OW, K = C * 4;
  ASSERT_EQ(shape.out, (Shape{O, OH, OW}));
  auto be = kernels::MakeBackend<double>({});
  auto layer = layers::MakeLayer<double>(shape);
  layer->Allocate(*be, n);
  const layers::KroneckerBlock kb = layer->Kronecker();
  ASSERT_EQ(kb.out, O);
  ASSERT_EQ(kb.in, K);
  ASSERT_EQ(kb.k(), K + 1);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> x(n * C * H * W), d(n * O * P), ad(n * O * P), theta(arch.num_params, 0.1);
  for (auto* v : {&x, &d, &ad})
    for (double& e : *v) e = u(rng);
  auto up = [&](const std::vector<double>& v, int64_t rows, int64_t cols) {
    auto m = be->Allocate(rows, cols);
    be->Upload(v.data(), m);
    return m;
  };
  auto X = up(x, n, C * H * W), theta_m = up(theta, 1, arch.num_params);
  auto constants = be->Allocate(1, 1), scratch = be->Allocate(n, 1), ones = be->Allocate(n, 1);
  be->Fill(ones, 1.0);
  const layers::Pass<double> pass{
      .backend = *be, .theta = theta_m, .constants = constants, .count = n, .scratch = scratch};
  auto S = be->Zeros(K + 1, K + 1), Gamma = be->Zeros(O, O);
  layer->AddInputFactor(pass, X, ones, S);
  layer->AddOutputFactor(pass, up(d, n, O * P), up(ad, n, O * P), Gamma);
  std::vector<double> s((K + 1) * (K + 1)), gamma(O * O);
  be->Download(S, s.data());
  be->Download(Gamma, gamma.data());

  std::vector<double> want_s((K + 1) * (K + 1), 0.0), want_gamma(O * O, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        std::vector<double> a(K + 1, 1.0);  // the patch, then the bias's 1
        for (int64_t c = 0; c < C; ++c)
          for (int64_t ki = 0; ki < 2; ++ki)
            for (int64_t kj = 0; kj < 2; ++kj) {
              const int64_t h = oh - 1 + ki, w = ow - 1 + kj;
              a[(c * 2 + ki) * 2 + kj] =
                  h < 0 || h >= H || w < 0 || w >= W ? 0.0 : x[((i * C + c) * H + h) * W + w];
            }
        for (int64_t r = 0; r <= K; ++r)
          for (int64_t q = 0; q <= K; ++q) want_s[r * (K + 1) + q] += a[r] * a[q];
        const int64_t t = oh * OW + ow;
        for (int64_t r = 0; r < O; ++r)
          for (int64_t q = 0; q < O; ++q)
            want_gamma[r * O + q] += d[(i * O + r) * P + t] * ad[(i * O + q) * P + t] / P;
      }
  for (size_t e = 0; e < s.size(); ++e) EXPECT_NEAR(s[e], want_s[e], 1e-12) << "S " << e;
  for (size_t e = 0; e < gamma.size(); ++e)
    EXPECT_NEAR(gamma[e], want_gamma[e], 1e-13) << "Γ " << e;
  EXPECT_EQ(want_s[K * (K + 1) + K], n * P);  // the bias corner counts every position
}

// kaiming_uniform_(a = √5): U(±1/√fan_in), fan_in = in·kh·kw = 3·3·2, for weight and bias.
TEST(Conv2dLayer, InitialisationIsTorchDefault) {
  const Architecture arch = Plan(R"({"bias": "b", "out": 40, "kernel": [3, 2]})", {3, 6, 6});
  std::vector<double> theta(arch.num_params), constants;
  layers::Initializer init(7, theta, constants);
  layers::kConv2dType.init(arch.layers[0], init);
  const double bound = 1.0 / std::sqrt(18.0);
  for (const TensorInfo& t : arch.layers[0].tensors) {
    double largest = 0, sum = 0;
    for (int64_t k = 0; k < t.size(); ++k) {
      largest = std::max(largest, std::fabs(theta[t.offset + k]));
      sum += theta[t.offset + k];
    }
    EXPECT_LE(largest, bound) << t.name;
    EXPECT_GT(largest, 0.9 * bound) << t.name;  // the bound is reached, not a smaller one
    EXPECT_LT(std::fabs(sum / t.size()), 0.25 * bound) << t.name;  // centred
  }
}

void ExpectPlanError(const std::string& keys, const Shape& in, const std::string& part) {
  try {
    Plan(keys, in);
    ADD_FAILURE() << "no error for " << keys << " on " << ShapeText(in);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("layer 0 (conv2d)"), std::string::npos) << e.what();
  }
}

TEST(Conv2dLayer, SpecErrorsNameTheLayer) {
  ExpectPlanError(R"({"out": 2})", {1, 5, 5}, "needs \"kernel\"");
  ExpectPlanError(R"({"kernel": 3})", {1, 5, 5}, "output channels");
  ExpectPlanError(R"({"out": 2, "kernel": 3})", {25}, "takes an image");
  ExpectPlanError(R"({"out": 2, "kernel": 6})", {1, 5, 5}, "does not fit");
  ExpectPlanError(R"({"out": 2, "kernel": 3, "dilation": 3})", {1, 5, 5}, "does not fit");
  ExpectPlanError(R"({"out": 2, "kernel": 3, "stride": 0})", {1, 5, 5}, "\"stride\"");
  ExpectPlanError(R"({"out": 2, "kernel": 3, "padding": -1})", {1, 5, 5}, "\"padding\"");
  ExpectPlanError(R"({"out": 2, "kernel": [3, 3, 3]})", {1, 5, 5}, "\"kernel\"");
  ExpectPlanError(R"({"out": 2, "kernel": 3, "groups": 2})", {1, 5, 5}, "unknown key \"groups\"");
  // Padding lets a kernel larger than the image fit.
  EXPECT_EQ(Plan(R"({"out": 2, "kernel": 6, "padding": 1})", {1, 5, 5}).layers[0].out,
            (Shape{2, 2, 2}));
}

}  // namespace
}  // namespace lethe
