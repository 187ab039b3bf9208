// dropout: nn.Dropout in evaluation mode, the identity (the model as it predicts). Key "p"
// (optional, 0 ≤ p < 1) is checked and recorded, and changes nothing. Any input shape, no
// tensors:
//
//   forward y = x,  backward δ_in = δ,  R{y} = R{x},  R{δ_in} = R{δ}  (no second-order terms)
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kDropoutType;

}  // namespace lethe::layers
