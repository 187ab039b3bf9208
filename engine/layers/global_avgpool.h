// global_avgpool: the mean of each channel over the image, [C, H, W] → [C]:
// torch.nn.AdaptiveAvgPool2d(1) followed by torch.nn.Flatten(). No keys, no parameters.
//
//   forward      y_c      = (1 / (H·W)) Σ_{h,w} x_{c,h,w}
//   backward     δ_in     = δ_c / (H·W) at every (c, h, w)
//   R forward    R{y}     = the same mean of R{x};   R backward: δ_in's formula on R{δ}
//
// It is avgpool2d's map with the window the whole image (kernel H × W), run by the same
// module (avgpool2d.h) and the same backend operations.
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kGlobalAvgPoolType;

}  // namespace lethe::layers
