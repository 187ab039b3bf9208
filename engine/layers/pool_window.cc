#include "engine/layers/pool_window.h"

#include <string>

#include "kernels/pool_math.h"

namespace lethe::layers {
namespace {

// Far beyond any image, low enough that no product of the checked values overflows.
constexpr int64_t kMaxWindow = int64_t{1} << 31;

kernels::WindowGeometry ReadWindow(SpecKeys& keys, const Shape& in) {
  const auto kernel = keys.IntOrPair("kernel", 1, kMaxWindow);
  if (!kernel) keys.Fail("needs \"kernel\" (an integer, or [kh, kw])");
  const auto stride = keys.IntOrPair("stride", 1, kMaxWindow).value_or(*kernel);
  const auto padding =
      keys.IntOrPair("padding", 0, kMaxWindow).value_or(std::pair<int64_t, int64_t>{0, 0});
  return {.channels = in[0],
          .height = in[1],
          .width = in[2],
          .kernel_h = kernel->first,
          .kernel_w = kernel->second,
          .stride_h = stride.first,
          .stride_w = stride.second,
          .pad_h = padding.first,
          .pad_w = padding.second};
}

}  // namespace

void CheckImageInput(const PlanContext& ctx, const Shape& in) {
  if (in.size() != 3 || ShapeSize(in) < 0)
    ctx.Fail("takes images [C, H, W], but its input has shape ", ShapeText(in),
             " (give \"input\": [C, H, W] in the spec, or put the layer after one that gives "
             "images)");
}

kernels::WindowGeometry PlanPoolingWindow(PlanContext& ctx) {
  CheckImageInput(ctx, ctx.in());
  const kernels::WindowGeometry g = ReadWindow(ctx.keys(), ctx.in());
  const std::string problem = kernels::PoolingGeometryProblem(g);
  if (!problem.empty())
    ctx.Fail(problem, " (on input ", ShapeText(ctx.in()), ", kernel [", g.kernel_h, ", ",
             g.kernel_w, "], stride [", g.stride_h, ", ", g.stride_w, "], padding [", g.pad_h, ", ",
             g.pad_w, "])");
  ctx.SetOut({g.channels, g.out_h(), g.out_w()});
  return g;
}

kernels::WindowGeometry PoolingWindow(const LayerShape& shape) {
  LETHE_CHECK(shape.in.size() == 3);
  SpecKeys keys(shape.spec, shape.type());
  const kernels::WindowGeometry g = ReadWindow(keys, shape.in);
  LETHE_CHECK(kernels::PoolingGeometryProblem(g).empty());
  return g;
}

}  // namespace lethe::layers
