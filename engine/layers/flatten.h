// flatten: one example's tensor as a vector, row-major — [C, H, W] → [C·H·W], exactly
// torch.nn.Flatten() (which, like this layer, leaves a vector as it is). No keys, no
// parameters.
//
// A batch row already holds the example row-major (kernels/backend.h), so the layer only
// changes the shape the next layer sees: every pass copies its input to its output
// (y = x, δ_in = δ, R{y} = R{x}, R{δ_in} = R{δ}; no second-order term).
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kFlattenType;

}  // namespace lethe::layers
