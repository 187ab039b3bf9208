#include "engine/layers/dropout.h"

#include <limits>

#include "engine/layers/pass_through.h"

namespace lethe::layers {
namespace {

// "p", the training-time drop probability, is checked (as nn.Dropout's constructor does)
// and kept in the spec; the output has the input's shape.
void PlanDropout(PlanContext& ctx) {
  const double max = std::numeric_limits<double>::max();
  if (std::optional<double> p = ctx.keys().Number("p", -max, max); p && !(*p >= 0 && *p < 1))
    ctx.Fail("\"p\" = ", *p, ": must be in [0, 1)");
}

}  // namespace

const LayerType kDropoutType = {.name = "dropout",
                                .plan = &PlanDropout,
                                .init = nullptr,
                                .make_f32 = &MakePassThrough<float>,
                                .make_f64 = &MakePassThrough<double>};

}  // namespace lethe::layers
