// maxpool2d, avgpool2d, global_avgpool and flatten: each through the one derivative checker
// (layer_gradient_check.h) on several windows (overlapping, padded, unequal per axis), their
// output shapes, the errors a user sees for a bad key or an input that is not an image,
// and a small pooled model's gradient and Hessian products through the objective.
#include <gtest/gtest.h>

#include <string>

#include "engine/model.h"
#include "engine/objective.h"
#include "tests/engine/layers/layer_gradient_check.h"
#include "tests/engine/test_problems.h"

namespace lethe {
namespace {

// Random normal inputs have no ties (almost surely), so the max pool is differentiable at
// them; a finite-difference step of 1e-5 would have to cross a gap between two window
// elements to change an argmax.
TEST(MaxPool2dLayer, DerivativesNonOverlapping) {
  testing::CheckLayerDerivatives(io::LayerSpec::Of("maxpool2d", R"({"kernel": 2})"), {2, 4, 6});
}
TEST(MaxPool2dLayer, DerivativesOverlappingPadded) {
  // 3 × 3 windows at stride 1: most inputs lie in several windows, so an input chosen by
  // more than one output gets their sum in δ_in.
  testing::CheckLayerDerivatives(
      io::LayerSpec::Of("maxpool2d", R"({"kernel": 3, "stride": 1, "padding": 1})"), {2, 5, 5});
}
TEST(MaxPool2dLayer, DerivativesPerAxis) {
  testing::CheckLayerDerivatives(
      io::LayerSpec::Of("maxpool2d", R"({"kernel": [3, 2], "stride": [2, 1], "padding": [1, 0]})"),
      {1, 7, 5});
}

TEST(AvgPool2dLayer, DerivativesNonOverlapping) {
  testing::CheckLayerDerivatives(io::LayerSpec::Of("avgpool2d", R"({"kernel": 2})"), {2, 4, 6});
}
TEST(AvgPool2dLayer, DerivativesOverlappingPadded) {
  testing::CheckLayerDerivatives(
      io::LayerSpec::Of("avgpool2d", R"({"kernel": 3, "stride": 2, "padding": 1})"), {3, 5, 6});
}
TEST(AvgPool2dLayer, DerivativesPerAxis) {
  testing::CheckLayerDerivatives(
      io::LayerSpec::Of("avgpool2d", R"({"kernel": [2, 3], "stride": [1, 2], "padding": [1, 1]})"),
      {2, 4, 5});
}

TEST(GlobalAvgPoolLayer, Derivatives) {
  testing::CheckLayerDerivatives(io::LayerSpec::Of("global_avgpool"), {3, 4, 5});
}

TEST(FlattenLayer, Derivatives) {
  testing::CheckLayerDerivatives(io::LayerSpec::Of("flatten"), {2, 3, 4});
  testing::CheckLayerDerivatives(io::LayerSpec::Of("flatten"), {7});
}

// Shape-preserving windows (3 × 3, stride 1, padding 1) inside a residual block, y = x +
// avgpool(tanh(maxpool(x))): the block drives its body's Linearize, R passes and backward
// through both pooling kinds with R{x} ≠ 0.
TEST(PoolingLayers, InsideAResidualBlockDerivatives) {
  io::LayerSpec block = io::LayerSpec::Of("residual");
  block.has_body = true;
  block.body = {io::LayerSpec::Of("maxpool2d", R"({"kernel": 3, "stride": 1, "padding": 1})"),
                io::LayerSpec::Of("tanh"),
                io::LayerSpec::Of("avgpool2d", R"({"kernel": 3, "stride": 1, "padding": 1})")};
  testing::CheckLayerDerivatives(block, {2, 4, 5});
}

// The shape a one-layer model of `type` with `keys` gives on input `in`.
Shape OutputShape(const std::string& type, const std::string& keys, const Shape& in) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.layers = {io::LayerSpec::Of(type, keys)};
  spec.input = in;
  ArchitectureSource source;
  source.one_layer_test = true;
  return Architecture::Build(spec, source, "spec.json").layers[0].out;
}

TEST(PoolingLayers, OutputShapesArePyTorchs) {
  // ⌊(in + 2·pad − kernel) / stride⌋ + 1 per axis; stride defaults to the kernel.
  EXPECT_EQ(OutputShape("maxpool2d", R"({"kernel": 2})", {3, 7, 9}), (Shape{3, 3, 4}));
  EXPECT_EQ(OutputShape("maxpool2d", R"({"kernel": 3, "stride": 2, "padding": 1})", {3, 7, 9}),
            (Shape{3, 4, 5}));
  EXPECT_EQ(OutputShape("avgpool2d", R"({"kernel": [3, 1], "stride": [1, 2]})", {1, 5, 5}),
            (Shape{1, 3, 3}));
  EXPECT_EQ(OutputShape("avgpool2d", R"({"kernel": 4, "padding": 2})", {2, 4, 4}),
            (Shape{2, 2, 2}));
  EXPECT_EQ(OutputShape("global_avgpool", "{}", {5, 3, 2}), (Shape{5}));
  EXPECT_EQ(OutputShape("flatten", "{}", {5, 3, 2}), (Shape{30}));
  EXPECT_EQ(OutputShape("flatten", "{}", {12}), (Shape{12}));
}

// The message of planning `type` with `keys` on input `in`, or "" when it plans.
std::string PlanError(const std::string& type, const std::string& keys, const Shape& in) {
  try {
    OutputShape(type, keys, in);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PoolingLayers, BadKeysAndShapesAreNamedErrors) {
  auto expect = [](const std::string& message, const std::string& part) {
    EXPECT_NE(message.find(part), std::string::npos) << "message: " << message;
  };
  const std::string where = "spec.json: layer 0 (maxpool2d): ";
  expect(PlanError("maxpool2d", R"({"kernel": 2})", {48}),
         where + "takes images [C, H, W], but its input has shape [48]");
  expect(PlanError("avgpool2d", R"({"kernel": 2})", {4, 4}),
         "layer 0 (avgpool2d): takes images [C, H, W], but its input has shape [4, 4]");
  expect(PlanError("global_avgpool", "{}", {10}),
         "layer 0 (global_avgpool): takes images [C, H, W]");
  expect(PlanError("maxpool2d", "{}", {1, 4, 4}), where + "needs \"kernel\"");
  expect(PlanError("maxpool2d", R"({"kernel": 0})", {1, 4, 4}), where + "\"kernel\" must be");
  expect(PlanError("maxpool2d", R"({"kernel": [2, 2, 2]})", {1, 4, 4}), "\"kernel\" must be");
  expect(PlanError("maxpool2d", R"({"kernel": 2, "stride": 0})", {1, 4, 4}), "\"stride\" must be");
  expect(PlanError("maxpool2d", R"({"kernel": 2, "padding": -1})", {1, 4, 4}),
         "\"padding\" must be");
  expect(PlanError("avgpool2d", R"({"kernel": 3, "padding": 2})", {1, 6, 6}),
         "padding height = 2: must be between 0 and half the kernel (3)");
  expect(PlanError("maxpool2d", R"({"kernel": [2, 7]})", {1, 4, 4}),
         where + "the width of the window (7) exceeds the padded input's (4)");
  expect(PlanError("maxpool2d", R"({"kernel": 2, "dilation": 1})", {1, 4, 4}),
         where + "unknown key \"dilation\"");
  expect(PlanError("maxpool2d", R"({"kernel": 2, "frozen": true})", {1, 4, 4}),
         "\"frozen\": true on a layer without parameters");
  expect(PlanError("global_avgpool", R"({"kernel": 2})", {1, 4, 4}), "unknown key \"kernel\"");
  expect(PlanError("flatten", R"({"start_dim": 1})", {1, 4, 4}), "unknown key \"start_dim\"");
  EXPECT_EQ(PlanError("maxpool2d", R"({"kernel": [3, 2], "padding": [1, 1]})", {1, 4, 4}), "");
}

// A model's gradient against central differences of the loss and its Hessian product
// against central differences of the gradient, through the objective (batches of 4 of 7
// examples: a partial last batch).
void CheckModelThroughObjective(const std::string& json, int64_t features) {
  SCOPED_TRACE(json);
  const io::ModelSpec spec = io::ModelSpec::Parse(json, "spec.json");
  const io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 7, features, 3, 5);
  const Model model = testing::RandomModel(spec, data, 9);
  auto backend = kernels::MakeBackend<double>({});
  Objective<double> objective(*backend, model.arch, UploadData(*backend, data),
                              ObjectiveOptions{.batch_size = 4});
  const int64_t p = objective.num_params();
  auto upload = [&](const std::vector<double>& v) {
    kernels::Matrix<double> m = backend->Allocate(1, static_cast<int64_t>(v.size()));
    backend->Upload(v.data(), m);
    return m;
  };
  auto download = [&](const kernels::Matrix<double>& m) {
    std::vector<double> v(m.size());
    backend->Download(m, v.data());
    return v;
  };
  auto shifted = [&](double t, const std::vector<double>& d) {
    std::vector<double> out = model.theta;
    for (int64_t j = 0; j < p; ++j) out[j] += t * d[j];
    return out;
  };
  auto gradient = [&](const std::vector<double>& theta) {
    kernels::Matrix<double> g = backend->Allocate(1, p);
    objective.ValueAndGradient(upload(theta), g);
    return download(g);
  };
  const double h = 1e-5, tolerance = 1e-7;  // as test_derivatives.cc
  const std::vector<double> g = gradient(model.theta);
  for (int64_t j = 0; j < p; ++j) {
    std::vector<double> e(p, 0.0);
    e[j] = 1;
    const double fd = (objective.ValueAndGradient(upload(shifted(h, e)), {}) -
                       objective.ValueAndGradient(upload(shifted(-h, e)), {})) /
                      (2 * h);
    ASSERT_NEAR(g[j], fd, tolerance) << "gradient component " << j;
  }
  std::vector<double> v(p);
  for (int64_t j = 0; j < p; ++j) v[j] = std::sin(1.0 + j);
  kernels::Matrix<double> hv = backend->Allocate(1, p);
  objective.CurvatureProduct(Curvature::kHessian, upload(model.theta), upload(v), hv);
  const std::vector<double> got = download(hv), plus = gradient(shifted(h, v)),
                            minus = gradient(shifted(-h, v));
  for (int64_t j = 0; j < p; ++j)
    ASSERT_NEAR(got[j], (plus[j] - minus[j]) / (2 * h), tolerance) << "Hv component " << j;
}

// Pooling below the first layer with parameters: shapes from "input", forward through
// each layer, nothing backpropagated below the first linear layer.
TEST(PoolingLayers, PooledImagesIntoAnMlpThroughTheObjective) {
  CheckModelThroughObjective(
      R"({"format": "lethe/1", "input": [2, 5, 6], "loss": "cross_entropy", "l2": 0.01,
          "layers": [{"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
                     {"type": "avgpool2d", "kernel": [2, 1], "stride": 1},
                     {"type": "flatten"},
                     {"type": "linear", "weight": "3.weight", "bias": "3.bias", "out": 4},
                     {"type": "tanh"},
                     {"type": "linear", "weight": "5.weight", "bias": "5.bias"}]})",
      2 * 5 * 6);
}

// Pooling between convolutions: backward, R-operator and Hessian terms pass through both
// pooling kinds and global average pooling (or flatten) to the first conv layer.
TEST(PoolingLayers, SmallCnnsThroughTheObjective) {
  for (const char* head : {R"({"type": "global_avgpool"})", R"({"type": "flatten"})"})
    CheckModelThroughObjective(
        std::string(R"({"format": "lethe/1", "input": [2, 6, 6], "loss": "cross_entropy",
            "l2": 0.01, "layers": [
            {"type": "conv2d", "weight": "0.weight", "bias": "0.bias", "out": 3, "kernel": 3,
             "padding": 1},
            {"type": "tanh"},
            {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
            {"type": "conv2d", "weight": "3.weight", "bias": "3.bias", "out": 4, "kernel": 2},
            {"type": "tanh"},
            {"type": "avgpool2d", "kernel": 2, "stride": 1, "padding": 1},
            )") +
            head + R"(,
            {"type": "linear", "weight": "7.weight", "bias": "7.bias"}]})",
        2 * 6 * 6);
}

}  // namespace
}  // namespace lethe
