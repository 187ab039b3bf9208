#include "engine/layers/maxpool2d.h"

#include "engine/layers/pool_window.h"
#include "kernels/pool_math.h"

namespace lethe::layers {
namespace {

template <typename T>
class MaxPool2d final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  explicit MaxPool2d(const LayerShape& shape) : Layer<T>(shape), window_(PoolingWindow(shape)) {
    LETHE_CHECK(this->in_width() == window_.in_size() &&
                this->out_width() == window_.channels * window_.positions());
  }

  void Allocate(kernels::Backend<T>& backend, int64_t rows) override {
    argmax_ = backend.Allocate(rows, out());
  }
  // The pooled values and the argmax of a pass that must not disturb Linearize's argmax.
  int64_t ScratchWidth() const override { return 2 * out(); }
  std::vector<Matrix> LinearizationState(int64_t count) const override {
    return {argmax_.Rows(0, count)};
  }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    pass.backend.MaxPool(window_, x, y, pass.scratch.Cols(0, out()));
  }
  // The argmax of this x, into scratch: a gradient pass leaves Linearize's alone.
  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& /*sinks*/) override {
    if (delta_in.empty()) return;
    const Matrix argmax = pass.scratch.Cols(out(), out());
    pass.backend.MaxPool(window_, x, pass.scratch.Cols(0, out()), argmax);
    pass.backend.ScatterAddIndexed(delta, argmax, T(0), delta_in);
  }

  void Linearize(const Pass<T>& pass, const Matrix& x, bool /*second_order*/) override {
    pass.backend.MaxPool(window_, x, pass.scratch.Cols(0, out()), Argmax(pass));
  }
  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    pass.backend.ScatterAddIndexed(delta, Argmax(pass), T(0), delta_in);
  }
  void RForward(const Pass<T>& pass, const Matrix& /*x*/, const Matrix& rx, const Matrix& /*v*/,
                Matrix ry) override {
    if (rx.empty())  // R{x} = 0
      pass.backend.Fill(ry, T(0));
    else
      pass.backend.GatherIndexed(rx, Argmax(pass), ry);
  }
  void RBackward(const Pass<T>& pass, bool /*hessian*/, const Matrix& /*x*/, const Matrix& /*rx*/,
                 const Matrix& /*delta*/, const Matrix& rdelta, const Matrix& /*v*/, Matrix /*hv*/,
                 Matrix rdelta_in) override {
    if (!rdelta_in.empty()) pass.backend.ScatterAddIndexed(rdelta, Argmax(pass), T(0), rdelta_in);
  }

 private:
  int64_t out() const { return this->out_width(); }
  Matrix Argmax(const Pass<T>& pass) const { return argmax_.Rows(0, pass.count); }

  const kernels::WindowGeometry window_;
  Matrix argmax_;  // a(x) of the current batch (Linearize), count × C·OH·OW, as T
};

void PlanMaxPool2d(PlanContext& ctx) {
  const kernels::WindowGeometry g = PlanPoolingWindow(ctx);
  // The argmax is stored as T: in f32 exact only up to 2^24 (kernels/pool_math.h).
  if (g.in_size() > kernels::kExactIndexLimit<float>)
    ctx.Fail("input ", ShapeText(ctx.in()), " has over 2^24 elements per example, more than ",
             "max pooling's indices can address in single precision");
}

template <typename T>
std::unique_ptr<Layer<T>> MakeMaxPool2d(const LayerShape& shape) {
  return std::make_unique<MaxPool2d<T>>(shape);
}

}  // namespace

const LayerType kMaxPool2dType = {.name = "maxpool2d",
                                  .plan = &PlanMaxPool2d,
                                  .init = nullptr,
                                  .make_f32 = &MakeMaxPool2d<float>,
                                  .make_f64 = &MakeMaxPool2d<double>};

}  // namespace lethe::layers
