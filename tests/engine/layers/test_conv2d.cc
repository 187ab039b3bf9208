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
#include "engine/objective.h"
#include "tests/engine/layers/layer_gradient_check.h"
#include "tests/engine/test_problems.h"

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

// A residual block of two "same" convolutions (padding 1, C channels in and out), the
// second without bias: y = x + conv(tanh(conv(x))), R{x} ≠ 0 into the second.
TEST(Conv2dLayer, DerivativesInsideAResidualBlock) {
  io::LayerSpec block = io::LayerSpec::Of("residual");
  block.has_body = true;
  block.body = {Conv(R"({"weight": "a.w", "bias": "a.b", "out": 2, "kernel": 3, "padding": 1})"),
                io::LayerSpec::Of("tanh"),
                Conv(R"({"weight": "c.w", "out": 2, "kernel": [3, 1], "padding": [1, 0]})")};
  testing::CheckLayerDerivatives(block, {2, 4, 5}, -1, Spatial());
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

// Two conv layers through the objective (batching, R{x} ≠ 0 into the second, grouped
// first-layer products, the forward-pass cache, K-FAC's backpropagation of unit vectors):
// conv 3x3 stride 2 padding 1 → tanh → conv 3x3 over the whole 3x3 map, 4 outputs, as the
// logits of a cross-entropy loss. (The last conv's output is [4, 1, 1], a vector in all but
// name; the checker's one-layer source admits it, so this test needs no flatten layer.)
TEST(Conv2dLayer, TwoConvLayersThroughTheObjective) {
  using Matrix = kernels::Matrix<double>;
  io::ModelSpec spec;
  spec.loss = LossKind::kCrossEntropy;
  spec.l2 = 0.01;
  spec.input = {2, 6, 6};
  spec.layers = {Conv(R"({"weight": "0.weight", "bias": "0.bias", "out": 3, "kernel": 3,
                          "stride": 2, "padding": 1})"),
                 io::LayerSpec::Of("tanh"),
                 Conv(R"({"weight": "2.weight", "bias": "2.bias", "out": 4, "kernel": 3})")};
  ArchitectureSource source;
  source.one_layer_test = true;
  const Architecture arch = Architecture::Build(spec, source, "test");
  ASSERT_EQ(arch.output_dim, 4);
  const int64_t p = arch.num_params;
  ASSERT_EQ(p, 3 * 18 + 3 + 4 * 27 + 4);
  const io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 7, 72, 4, 13);
  auto be = kernels::MakeBackend<double>({});
  // Batches of 3 (a partial last one); groups of 2 directions in the first conv layer
  // (its GroupElements(3) = 3 · (3·9 + 2·18) = 189 per direction).
  Objective<double> objective(*be, arch, UploadData(*be, data),
                              ObjectiveOptions{.batch_size = 3, .group_elements = 400});
  std::mt19937_64 rng(17);
  std::normal_distribution<double> normal(0.0, 0.5);
  auto random = [&](int64_t size) {
    std::vector<double> v(size);
    for (double& x : v) x = normal(rng);
    return v;
  };
  auto up = [&](const std::vector<double>& v, int64_t rows) {
    Matrix m = be->Allocate(rows, static_cast<int64_t>(v.size()) / rows);
    be->Upload(v.data(), m);
    return m;
  };
  auto down = [&](const Matrix& m) {
    std::vector<double> v(m.size());
    be->Download(m, v.data());
    return v;
  };
  auto shifted = [](std::vector<double> a, double t, const std::vector<double>& d) {
    for (size_t i = 0; i < a.size(); ++i) a[i] += t * d[i];
    return a;
  };
  auto gradient = [&](const std::vector<double>& theta) {
    Matrix g = be->Allocate(1, p);
    objective.ValueAndGradient(up(theta, 1), g);
    return down(g);
  };
  auto expect_close = [](const std::vector<double>& got, const std::vector<double>& want,
                         double tol, const char* what) {
    ASSERT_EQ(got.size(), want.size());
    double scale = 1e-3;
    for (double w : want) scale = std::max(scale, std::abs(w));
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], tol * scale) << what << " component " << i;
  };
  const double h = 1e-5, fd_tolerance = 1e-7, rounding = 1e-12;
  const std::vector<double> theta0 = random(p);
  const Matrix theta = up(theta0, 1);
  const std::vector<double> g0 = gradient(theta0);

  // Gradient against central differences of the objective.
  std::vector<double> fd(p);
  for (int64_t k = 0; k < p; ++k) {
    std::vector<double> e(p, 0.0);
    e[k] = 1;
    fd[k] = (objective.ValueAndGradient(up(shifted(theta0, h, e), 1), Matrix()) -
             objective.ValueAndGradient(up(shifted(theta0, -h, e), 1), Matrix())) /
            (2 * h);
  }
  expect_close(g0, fd, fd_tolerance, "∇L");

  // Hessian products of three directions (a group of 2 and one of 1) against central
  // differences of the gradient; symmetry of H and G; G positive semi-definite.
  const std::vector<double> v = random(3 * p);
  Matrix V = up(v, 3), HV = be->Allocate(3, p), GV = be->Allocate(3, p);
  objective.CurvatureProduct(Curvature::kHessian, theta, V, HV);
  objective.CurvatureProduct(Curvature::kGaussNewton, theta, V, GV);
  const std::vector<double> hv = down(HV), gv = down(GV);
  for (int j = 0; j < 3; ++j) {
    const std::vector<double> vj(v.begin() + j * p, v.begin() + (j + 1) * p);
    const std::vector<double> plus = gradient(shifted(theta0, h, vj));
    const std::vector<double> minus = gradient(shifted(theta0, -h, vj));
    std::vector<double> want(p);
    for (int64_t k = 0; k < p; ++k) want[k] = (plus[k] - minus[k]) / (2 * h);
    expect_close(std::vector<double>(hv.begin() + j * p, hv.begin() + (j + 1) * p), want,
                 fd_tolerance, "H v");
  }
  auto dot = [&](const std::vector<double>& a, int i, const std::vector<double>& b, int j) {
    double s = 0, m = 0;
    for (int64_t k = 0; k < p; ++k)
      s += a[i * p + k] * b[j * p + k], m += std::abs(a[i * p + k] * b[j * p + k]);
    return std::pair<double, double>{s, m};
  };
  for (const auto* c : {&hv, &gv}) {
    const auto [uhv, mag] = dot(v, 0, *c, 1);
    EXPECT_NEAR(uhv, dot(v, 1, *c, 0).first, rounding * mag) << "symmetry";
  }
  for (int j = 0; j < 3; ++j) EXPECT_GT(dot(v, j, gv, j).first, 0) << "vᵀ G v";

  // Per-example gradients: their mean plus l2·θ is the gradient; their dots with two
  // directions equal PerExampleGradientDots (never forming n × p).
  const int64_t n = data.n;
  Matrix rows = be->Allocate(n, p), dots = be->Allocate(n, 2);
  objective.PerExampleGradients(theta, 0, n, rows);
  const std::vector<double> r = down(rows), s = random(2 * p);
  objective.PerExampleGradientDots(theta, up(s, 2), dots);
  std::vector<double> mean(p, 0.0), want_dots(n * 2, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < p; ++k) {
      mean[k] += r[i * p + k] / n;
      for (int j = 0; j < 2; ++j) want_dots[i * 2 + j] += r[i * p + k] * s[j * p + k];
    }
  for (int64_t k = 0; k < p; ++k) mean[k] += spec.l2 * theta0[k];
  expect_close(mean, g0, rounding, "mean of per-example gradients");
  expect_close(down(dots), want_dots, rounding, "per-example dots");

  // K-FAC: one pair per conv layer, [W | b] blocks of out × (C·kh·kw + 1), Γ and S
  // symmetric with a positive diagonal.
  std::vector<Matrix> gammas, inputs;
  objective.KroneckerFactors(theta, &gammas, &inputs);
  const std::vector<layers::KroneckerBlock> blocks = objective.KroneckerBlocks();
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].out, 3);
  EXPECT_EQ(blocks[0].k(), 19);
  EXPECT_EQ(blocks[1].out, 4);
  EXPECT_EQ(blocks[1].k(), 28);
  for (size_t l = 0; l < 2; ++l)
    for (const Matrix* m : {&gammas[l], &inputs[l]}) {
      const std::vector<double> f = down(*m);
      const int64_t k = m->rows();
      for (int64_t a = 0; a < k; ++a) {
        EXPECT_GT(f[a * k + a], 0) << "layer " << l;
        for (int64_t b = 0; b < a; ++b) EXPECT_EQ(f[a * k + b], f[b * k + a]);
      }
    }
  // The bias corner of S: every example's every position contributes 1, averaged over n.
  const std::vector<double> s0 = down(inputs[0]);
  EXPECT_NEAR(s0[18 * 19 + 18], 9.0, 1e-12);
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
