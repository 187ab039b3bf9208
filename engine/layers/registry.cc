// The one place that lists the layer types (engine/layers/plan.h: LayerType). A table, not
// self-registering statics: lethe_engine is a static library, and a layer file that
// registers itself from a static initialiser is dropped by the linker when nothing else
// references it.
#include <string>

#include "common/error.h"
#include "engine/layers/activation.h"
#include "engine/layers/avgpool2d.h"
#include "engine/layers/conv2d.h"
#include "engine/layers/batchnorm.h"
#include "engine/layers/dropout.h"
#include "engine/layers/flatten.h"
#include "engine/layers/global_avgpool.h"
#include "engine/layers/embedding_bag.h"
#include "engine/layers/layer.h"
#include "engine/layers/layernorm.h"
#include "engine/layers/linear.h"
#include "engine/layers/maxpool2d.h"
#include "engine/layers/plan.h"
#include "engine/layers/residual.h"

namespace lethe::layers {
namespace {

const LayerType* const kLayerTypes[] = {
    &kLinearType,
    &kEmbeddingBagType,
    &kActivationTypes[0], &kActivationTypes[1], &kActivationTypes[2],
    &kActivationTypes[3], &kActivationTypes[4], &kActivationTypes[5],
    &kConv2dType,
    &kLayerNormType, &kBatchNormType, &kDropoutType,
    &kResidualType,
    // pooling and flatten (maxpool2d.h, avgpool2d.h, global_avgpool.h, flatten.h)
    &kMaxPool2dType, &kAvgPool2dType, &kGlobalAvgPoolType, &kFlattenType,
};

}  // namespace

const LayerType* FindLayerType(const std::string& name) {
  for (const LayerType* t : kLayerTypes)
    if (name == t->name) return t;
  return nullptr;
}

std::string KnownLayerTypes() {
  std::string s;
  for (const LayerType* t : kLayerTypes) s += (s.empty() ? "" : ", ") + std::string(t->name);
  return s;
}

template <>
std::unique_ptr<Layer<float>> MakeLayer<float>(const LayerShape& shape) {
  const LayerType* t = FindLayerType(shape.type());
  LETHE_CHECK(t, "no layer module for type ", shape.type());
  return t->make_f32(shape);
}

template <>
std::unique_ptr<Layer<double>> MakeLayer<double>(const LayerShape& shape) {
  const LayerType* t = FindLayerType(shape.type());
  LETHE_CHECK(t, "no layer module for type ", shape.type());
  return t->make_f64(shape);
}

}  // namespace lethe::layers
