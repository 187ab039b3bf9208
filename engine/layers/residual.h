// residual: y = x + body(x), a block of layers with a skip connection (ResNet's basic
// block without its final activation). Keys: "layers" (the body, any layer types, nested
// residuals included); the body's output shape must equal its input's.
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kResidualType;

}  // namespace lethe::layers
