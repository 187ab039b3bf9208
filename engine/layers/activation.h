// Elementwise activations y = σ(x) (relu, tanh, sigmoid, gelu, softplus, identity): one
// module, one layer type per function, no keys, any input shape.
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kActivationTypes[6];

}  // namespace lethe::layers
