// Every layer module through the one derivative checker (layer_gradient_check.h): a new
// layer type adds its cases here (or in its own test file next to this one).
#include "tests/engine/layers/layer_gradient_check.h"

namespace lethe {
namespace {

io::LayerSpec LinearSpec(bool bias) { return io::LayerSpec::Linear("0.weight", bias ? "0.bias" : ""); }

TEST(LinearLayer, DerivativesWithBias) { testing::CheckLayerDerivatives(LinearSpec(true), {4}, 3); }
TEST(LinearLayer, DerivativesWithoutBias) {
  testing::CheckLayerDerivatives(LinearSpec(false), {3}, 5);
}
TEST(LinearLayer, DerivativesOneOutput) { testing::CheckLayerDerivatives(LinearSpec(true), {6}, 1); }

TEST(LinearLayer, FrozenDerivatives) {
  // Its weight and bias are fixed tensors: no parameters, only the input's derivatives.
  io::LayerSpec ls = io::LayerSpec::Of("linear", R"({"weight": "w", "bias": "b", "frozen": true})");
  testing::CheckLayerDerivatives(ls, {4}, 3);
}

io::LayerSpec Residual(std::vector<io::LayerSpec> body) {
  io::LayerSpec block = io::LayerSpec::Of("residual");
  block.has_body = true;
  block.body = std::move(body);
  return block;
}

TEST(ResidualLayer, Derivatives) {
  testing::CheckLayerDerivatives(
      Residual({io::LayerSpec::Linear("a.w", "a.b", 5), io::LayerSpec::Of("tanh"),
                io::LayerSpec::Linear("c.w", "", 4)}),
      {4});
}

TEST(ResidualLayer, NestedAndFrozenInsideDerivatives) {
  testing::CheckLayerDerivatives(
      Residual({io::LayerSpec::Of("linear", R"({"weight": "f.w", "out": 4, "frozen": true})"),
                io::LayerSpec::Of("softplus"),
                Residual({io::LayerSpec::Linear("a.w", "a.b", 3), io::LayerSpec::Of("tanh"),
                          io::LayerSpec::Linear("c.w", "c.b", 4)}),
                io::LayerSpec::Of("sigmoid")}),
      {4});
}

TEST(ResidualLayer, ParameterFreeBodyDerivatives) {
  testing::CheckLayerDerivatives(Residual({io::LayerSpec::Of("tanh")}), {3});
  testing::CheckLayerDerivatives(Residual({io::LayerSpec::Of("identity")}), {3});  // y = 2x
}

// Plans that must fail, each with a message naming the layer.
void ExpectPlanError(const io::LayerSpec& layer, const Shape& in, const std::string& phrase) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.input = in;
  spec.layers = {layer, io::LayerSpec::Linear("head.w", "", 2)};
  try {
    Architecture::Build(spec, {}, "m.json");
    ADD_FAILURE() << "no error; expected: " << phrase;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("m.json: layer 0"), std::string::npos) << e.what();
  }
}

TEST(LayerPlans, BadSpecsNameTheLayer) {
  ExpectPlanError(Residual({io::LayerSpec::Linear("a.w", "", 3)}), {4},
                  "the body gives shape [3] but y = x + body(x) needs its input's, [4]");
  // An empty body (y = 2x) is a missing or misspelt one; the exporter refuses it too.
  ExpectPlanError(Residual({}), {4}, "needs a non-empty \"layers\" body");
  ExpectPlanError(io::LayerSpec::Of("tanh", R"({"frozen": true})"), {4},
                  "\"frozen\": true on a layer without parameters");
  ExpectPlanError(io::LayerSpec::Of("linear", R"({"weight": "w", "frozen": 1})"), {4},
                  "\"frozen\" must be true or false");
  ExpectPlanError(io::LayerSpec::Of("linear", R"({"weight": "w", "out": 0})"), {4},
                  "\"out\" = 0: must be in [1,");
  ExpectPlanError(io::LayerSpec::Of("linear", R"({"weight": "w", "out": 3, "kernel": 3})"), {4},
                  "unknown key \"kernel\" (this layer type takes: bias, out, weight)");
  ExpectPlanError(Residual({io::LayerSpec::Linear("a.w", "", 4), io::LayerSpec::Of("tanh"),
                            io::LayerSpec::Linear("a.w", "", 4)}),
                  {4}, "layer 0.2 (linear): tensor \"a.w\" is used twice");
  ExpectPlanError(io::LayerSpec::Linear("w", "", 3), {2, 2}, "takes a vector, but its input has shape [2, 2]");
  io::LayerSpec with_body = io::LayerSpec::Of("tanh");
  with_body.has_body = true;
  ExpectPlanError(with_body, {4}, "unknown key \"layers\"");
}

TEST(LayerPlans, FrozenTensorsAreFixedAndLeftOutOfTheta) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.input = {4};
  spec.layers = {io::LayerSpec::Of("linear", R"({"weight": "f.w", "bias": "f.b", "out": 3, "frozen": true})"),
                 io::LayerSpec::Of("tanh"), io::LayerSpec::Linear("h.w", "h.b", 2)};
  const Architecture arch = Architecture::Build(spec, {}, "m.json");
  EXPECT_EQ(arch.num_params, 2 * 3 + 2);
  EXPECT_EQ(arch.constants.size(), 3u * 4 + 3);
  ASSERT_EQ(arch.layers[0].tensors.size(), 2u);
  EXPECT_FALSE(arch.layers[0].tensors[0].trainable);
  EXPECT_EQ(arch.layers[0].tensors[1].offset, 12);  // in the constants
  EXPECT_TRUE(arch.layers[2].tensors[0].trainable);
  EXPECT_EQ(arch.layers[2].tensors[0].offset, 0);   // θ starts with the head
  // The resolved spec keeps "frozen" (a saved file stays frozen).
  EXPECT_NE(arch.spec.ToJson().find("\"frozen\":true"), std::string::npos) << arch.spec.ToJson();
}

class ActivationLayer : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationLayer, Derivatives) {
  testing::CheckLayerDerivatives(io::LayerSpec::Of(Name(GetParam())), {4});
}

INSTANTIATE_TEST_SUITE_P(All, ActivationLayer,
                         ::testing::Values(Activation::kIdentity, Activation::kRelu,
                                           Activation::kTanh, Activation::kSigmoid,
                                           Activation::kGelu, Activation::kSoftplus),
                         [](const auto& info) { return std::string(Name(info.param)); });

TEST(LayerRegistry, EveryLayerKnowsItsTensors) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.layers = {io::LayerSpec::Linear("0.weight", "0.bias", 3)};
  spec.input = {4};
  const Architecture arch = Architecture::Build(spec, {}, "test");
  auto layer = layers::MakeLayer<double>(arch.layers[0]);
  const std::vector<TensorInfo> t = layer->Tensors();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "0.weight");
  EXPECT_EQ(t[0].shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(t[0].offset, 0);
  EXPECT_EQ(t[1].name, "0.bias");
  EXPECT_EQ(t[1].offset, 12);
  EXPECT_EQ(layer->num_params(), arch.num_params);
}

}  // namespace
}  // namespace lethe
