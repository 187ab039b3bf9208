#include "engine/layers/global_avgpool.h"

#include "engine/layers/avgpool2d.h"
#include "engine/layers/pool_window.h"

namespace lethe::layers {
namespace {

// One window covering the image: kernel H × W, stride 1 (there is one position), no padding.
kernels::WindowGeometry WholeImage(const Shape& in) {
  return {.channels = in[0], .height = in[1], .width = in[2], .kernel_h = in[1], .kernel_w = in[2]};
}

void PlanGlobalAvgPool(PlanContext& ctx) {
  CheckImageInput(ctx, ctx.in());
  ctx.SetOut({ctx.in()[0]});
}

template <typename T>
std::unique_ptr<Layer<T>> MakeGlobalAvgPool(const LayerShape& shape) {
  LETHE_CHECK(shape.in.size() == 3);
  return MakeAveragePool<T>(shape, WholeImage(shape.in));
}

}  // namespace

const LayerType kGlobalAvgPoolType = {.name = "global_avgpool",
                                      .plan = &PlanGlobalAvgPool,
                                      .init = nullptr,
                                      .make_f32 = &MakeGlobalAvgPool<float>,
                                      .make_f64 = &MakeGlobalAvgPool<double>};

}  // namespace lethe::layers
