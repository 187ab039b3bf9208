// linear: y = x Wᵀ + b, exactly torch.nn.Linear. Keys: "weight" (tensor [out, in], default
// "<index>.weight"), "bias" (tensor [out], optional), "out" (optional: the file's weight, or
// for the model's last layer the data, can decide it), "frozen".
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kLinearType;

}  // namespace lethe::layers
