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
