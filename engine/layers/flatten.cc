#include "engine/layers/flatten.h"

namespace lethe::layers {
namespace {

template <typename T>
class Flatten final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  explicit Flatten(const LayerShape& shape) : Layer<T>(shape) {
    LETHE_CHECK(this->in_width() == this->out_width());
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
    if (rx.empty())  // R{x} = 0
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

// A vector stays as it is, even while its width is unknown (a model file read without data,
// whose linear layer after this one will learn the width from its weight).
void PlanFlatten(PlanContext& ctx) {
  const Shape& in = ctx.in();
  if (in.size() == 1) return;  // the output has the input's shape
  if (in.empty() || ShapeSize(in) < 0)
    ctx.Fail("its input shape ", ShapeText(in), " is not known (give \"input\" in the spec)");
  ctx.SetOut({ShapeSize(in)});
}

template <typename T>
std::unique_ptr<Layer<T>> MakeFlatten(const LayerShape& shape) {
  return std::make_unique<Flatten<T>>(shape);
}

}  // namespace

const LayerType kFlattenType = {.name = "flatten",
                                .plan = &PlanFlatten,
                                .init = nullptr,
                                .make_f32 = &MakeFlatten<float>,
                                .make_f64 = &MakeFlatten<double>};

}  // namespace lethe::layers
