#include "engine/layers/flatten.h"

#include "engine/layers/pass_through.h"

namespace lethe::layers {
namespace {

// A vector stays as it is, even while its width is unknown (a model file read without data,
// whose linear layer after this one will learn the width from its weight).
void PlanFlatten(PlanContext& ctx) {
  const Shape& in = ctx.in();
  if (in.size() == 1) return;  // the output has the input's shape
  if (in.empty() || ShapeSize(in) < 0)
    ctx.Fail("its input shape ", ShapeText(in), " is not known (give \"input\" in the spec)");
  ctx.SetOut({ShapeSize(in)});
}

}  // namespace

const LayerType kFlattenType = {.name = "flatten",
                                .plan = &PlanFlatten,
                                .init = nullptr,
                                .make_f32 = &MakePassThrough<float>,
                                .make_f64 = &MakePassThrough<double>};

}  // namespace lethe::layers
