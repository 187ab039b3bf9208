#include "engine/layers/dropout.h"

#include <limits>

namespace lethe::layers {
namespace {

template <typename T>
class Dropout final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  explicit Dropout(const LayerShape& shape) : Layer<T>(shape) {
    LETHE_CHECK(shape.in == shape.out && shape.tensors.empty());
  }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override { pass.backend.Copy(x, y); }
  void Backward(const Pass<T>& pass, const Matrix& /*x*/, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& /*sinks*/) override {
    if (!delta_in.empty()) pass.backend.Copy(delta, delta_in);
  }
  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    pass.backend.Copy(delta, delta_in);
  }
  void RForward(const Pass<T>& pass, const Matrix& /*x*/, const Matrix& rx, const Matrix& /*v*/,
                Matrix ry) override {
    if (rx.empty())
      pass.backend.Fill(ry, T(0));
    else
      pass.backend.Copy(rx, ry);
  }
  void RBackward(const Pass<T>& pass, bool /*hessian*/, const Matrix& /*x*/, const Matrix& /*rx*/,
                 const Matrix& /*delta*/, const Matrix& rdelta, const Matrix& /*v*/, Matrix /*hv*/,
                 Matrix rdelta_in) override {
    if (!rdelta_in.empty()) pass.backend.Copy(rdelta, rdelta_in);
  }
};

// "p", the training-time drop probability, is checked (as nn.Dropout's constructor does)
// and kept in the spec; the output has the input's shape.
void PlanDropout(PlanContext& ctx) {
  const double max = std::numeric_limits<double>::max();
  if (std::optional<double> p = ctx.keys().Number("p", -max, max); p && !(*p >= 0 && *p < 1))
    ctx.Fail("\"p\" = ", *p, ": must be in [0, 1)");
}

template <typename T>
std::unique_ptr<Layer<T>> MakeDropout(const LayerShape& shape) {
  return std::make_unique<Dropout<T>>(shape);
}

}  // namespace

const LayerType kDropoutType = {.name = "dropout",
                                .plan = &PlanDropout,
                                .init = nullptr,
                                .make_f32 = &MakeDropout<float>,
                                .make_f64 = &MakeDropout<double>};

}  // namespace lethe::layers
