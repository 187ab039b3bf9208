#include "engine/layers/avgpool2d.h"

#include "engine/layers/pool_window.h"

namespace lethe::layers {
namespace {

template <typename T>
class AveragePool final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  AveragePool(const LayerShape& shape, const kernels::WindowGeometry& window)
      : Layer<T>(shape), window_(window) {
    LETHE_CHECK(this->in_width() == window_.in_size() &&
                this->out_width() == window_.channels * window_.positions());
  }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    pass.backend.AvgPool(window_, x, y);
  }
  void Backward(const Pass<T>& pass, const Matrix& /*x*/, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& /*sinks*/) override {
    if (!delta_in.empty()) BackwardInput(pass, delta, delta_in);
  }
  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    pass.backend.AvgPoolAdjoint(window_, delta, T(0), delta_in);
  }
  void RForward(const Pass<T>& pass, const Matrix& /*x*/, const Matrix& rx, const Matrix& /*v*/,
                Matrix ry) override {
    if (rx.empty())  // R{x} = 0
      pass.backend.Fill(ry, T(0));
    else
      pass.backend.AvgPool(window_, rx, ry);
  }
  void RBackward(const Pass<T>& pass, bool /*hessian*/, const Matrix& /*x*/, const Matrix& /*rx*/,
                 const Matrix& /*delta*/, const Matrix& rdelta, const Matrix& /*v*/, Matrix /*hv*/,
                 Matrix rdelta_in) override {
    if (!rdelta_in.empty()) BackwardInput(pass, rdelta, rdelta_in);
  }

 private:
  const kernels::WindowGeometry window_;
};

void PlanAvgPool2d(PlanContext& ctx) { PlanPoolingWindow(ctx); }

template <typename T>
std::unique_ptr<Layer<T>> MakeAvgPool2d(const LayerShape& shape) {
  return MakeAveragePool<T>(shape, PoolingWindow(shape));
}

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> MakeAveragePool(const LayerShape& shape,
                                          const kernels::WindowGeometry& window) {
  return std::make_unique<AveragePool<T>>(shape, window);
}

template std::unique_ptr<Layer<float>> MakeAveragePool<float>(const LayerShape&,
                                                              const kernels::WindowGeometry&);
template std::unique_ptr<Layer<double>> MakeAveragePool<double>(const LayerShape&,
                                                                const kernels::WindowGeometry&);

const LayerType kAvgPool2dType = {.name = "avgpool2d",
                                  .plan = &PlanAvgPool2d,
                                  .init = nullptr,
                                  .make_f32 = &MakeAvgPool2d<float>,
                                  .make_f64 = &MakeAvgPool2d<double>};

}  // namespace lethe::layers
