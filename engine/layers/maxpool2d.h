// maxpool2d: torch.nn.MaxPool2d(kernel, stride, padding) on an image [C, H, W], giving
// [C, OH, OW]. Keys: "kernel" (required), "stride" (default: the kernel), "padding"
// (default 0; at most half the kernel; padding never wins a maximum), each an integer or a
// pair [h, w]. No parameters.
//
// Each output is one of its window's inputs: y = x[a(x)], with a(x) (count × C·OH·OW) the
// index of the window's first maximal element in row-major order, as PyTorch chooses it
// (kernels::Backend::MaxPool). The map is linear wherever the maxima are strict, so with
// the argmax fixed (Linearize keeps it), for a batch and δ = ∂ℓ/∂y:
//
//   forward      y        = x[a]                          (MaxPool)
//   backward     δ_in     = Σ over outputs of δ scattered to a   (ScatterAddIndexed: an
//                           input chosen by several overlapping windows gets them all)
//   R forward    R{y}     = R{x}[a]                       (GatherIndexed)
//   R backward   R{δ_in}  = R{δ} scattered to a
//   Gauss-Newton the same: the layer is piecewise linear, its second derivative is zero
//                almost everywhere, so there is no δ term.
//
// At ties the derivative is PyTorch's one-sided choice (the first maximum), not a
// subgradient average; a check against finite differences needs inputs without ties.
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kMaxPool2dType;

}  // namespace lethe::layers
