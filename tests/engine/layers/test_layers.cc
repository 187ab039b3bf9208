// Every layer module through the one derivative checker (layer_gradient_check.h): a new
// layer type adds its cases here (or in its own test file next to this one).
#include "tests/engine/layers/layer_gradient_check.h"

namespace lethe {
namespace {

io::LayerSpec LinearSpec(bool bias) {
  io::LayerSpec ls;
  ls.type = io::LayerSpec::Type::kLinear;
  ls.weight = "0.weight";
  if (bias) ls.bias = "0.bias";
  return ls;
}

TEST(LinearLayer, DerivativesWithBias) { testing::CheckLayerDerivatives(LinearSpec(true), 4, 3); }
TEST(LinearLayer, DerivativesWithoutBias) {
  testing::CheckLayerDerivatives(LinearSpec(false), 3, 5);
}
TEST(LinearLayer, DerivativesOneOutput) { testing::CheckLayerDerivatives(LinearSpec(true), 6, 1); }

class ActivationLayer : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationLayer, Derivatives) {
  io::LayerSpec ls;
  ls.type = io::LayerSpec::Type::kActivation;
  ls.activation = GetParam();
  testing::CheckLayerDerivatives(ls, 4, 4);
}

INSTANTIATE_TEST_SUITE_P(All, ActivationLayer,
                         ::testing::Values(Activation::kIdentity, Activation::kRelu,
                                           Activation::kTanh, Activation::kSigmoid,
                                           Activation::kGelu, Activation::kSoftplus),
                         [](const auto& info) { return std::string(Name(info.param)); });

TEST(LayerRegistry, EveryLayerKnowsItsTensors) {
  io::ModelSpec spec;
  spec.loss = LossKind::kMse;
  spec.layers = {LinearSpec(true)};
  const Architecture arch = Architecture::Build(spec, 4, {3}, "test");
  auto layer = layers::MakeLayer<double>(spec.layers[0], arch.layers[0]);
  const std::vector<layers::Tensor> t = layer->Tensors();
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
