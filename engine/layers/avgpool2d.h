// avgpool2d: torch.nn.AvgPool2d(kernel, stride, padding) with its defaults
// (count_include_pad=True, ceil_mode=False) on an image [C, H, W], giving [C, OH, OW].
// Keys as maxpool2d: "kernel" (required), "stride" (default: the kernel), "padding"
// (default 0, at most half the kernel), each an integer or a pair [h, w]. No parameters.
//
// A fixed linear map P: each output is its window's sum over kh·kw, the divisor counting
// the padding (kernels::Backend::AvgPool). For a batch and δ = ∂ℓ/∂y:
//
//   forward      y        = P x                 (AvgPool)
//   backward     δ_in     = Pᵀ δ                (AvgPoolAdjoint)
//   R forward    R{y}     = P R{x}
//   R backward   R{δ_in}  = Pᵀ R{δ}
//   Gauss-Newton the same (linear: no second-order term); nothing to linearise.
//
// global_avgpool (global_avgpool.h) is this map with the window the whole image.
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kAvgPool2dType;

// The average-pooling module for a planned layer whose input is [C, H, W] and whose window
// is `window` (avgpool2d's keys, or global_avgpool's whole image).
template <typename T>
std::unique_ptr<Layer<T>> MakeAveragePool(const LayerShape& shape,
                                          const kernels::WindowGeometry& window);

}  // namespace lethe::layers
