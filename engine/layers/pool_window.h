// The window keys the 2-D pooling layers share (maxpool2d, avgpool2d), as PyTorch's
// MaxPool2d / AvgPool2d take them: "kernel" (required), "stride" (default: the kernel),
// "padding" (default 0), each an integer or a pair [h, w]. Read and checked once when the
// layer is planned (the user's errors, naming the layer), and read again from the resolved
// spec when its compute module is made.
#pragma once

#include <cstdint>

#include "engine/layers/plan.h"
#include "kernels/backend.h"

namespace lethe::layers {

// Fails, naming the layer, unless `in` is an image [C, H, W].
void CheckImageInput(const PlanContext& ctx, const Shape& in);

// Plans a pooling layer: the keys, the window on the input [C, H, W], and the output
// [C, OH, OW] (SetOut). Fails, naming the layer, on a bad key, a non-image input, or a
// window PyTorch would refuse (padding over half the kernel, a kernel larger than the
// padded input).
kernels::WindowGeometry PlanPoolingWindow(PlanContext& ctx);

// The window of a planned pooling layer (its keys as planned, on its input shape).
kernels::WindowGeometry PoolingWindow(const LayerShape& shape);

}  // namespace lethe::layers
