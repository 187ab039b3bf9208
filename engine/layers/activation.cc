#include "engine/layers/activation.h"

namespace lethe::layers {
namespace {

template <typename T>
class ActivationLayer final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  explicit ActivationLayer(const LayerShape& shape)
      : Layer<T>(shape), activation_(*ParseActivation(shape.type())) {
    LETHE_CHECK(shape.in == shape.out);
  }

  void Allocate(kernels::Backend<T>& backend, int64_t rows) override {
    sigma1_ = backend.Allocate(rows, width());
    sigma2_ = backend.Allocate(rows, width());
  }
  int64_t ScratchWidth() const override { return width(); }
  std::vector<Matrix> LinearizationState(int64_t count) const override {
    return {sigma1_.Rows(0, count), sigma2_.Rows(0, count)};
  }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    pass.backend.Activate(activation_, 0, x, y);
  }
  // σ'(x) into scratch: a gradient pass does not disturb what Linearize kept.
  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& /*sinks*/) override {
    if (delta_in.empty()) return;
    Matrix s1 = pass.scratch.Cols(0, width());
    pass.backend.Activate(activation_, 1, x, s1);
    pass.backend.Multiply(delta, s1, T(0), delta_in);
  }

  void Linearize(const Pass<T>& pass, const Matrix& x, bool second_order) override {
    pass.backend.Activate(activation_, 1, x, sigma1_.Rows(0, pass.count));
    if (second_order) pass.backend.Activate(activation_, 2, x, sigma2_.Rows(0, pass.count));
  }
  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    pass.backend.Multiply(delta, sigma1_.Rows(0, pass.count), T(0), delta_in);
  }
  void RForward(const Pass<T>& pass, const Matrix& /*x*/, const Matrix& rx, const Matrix& /*v*/,
                Matrix ry) override {
    if (rx.empty()) {  // R{x} = 0
      pass.backend.Fill(ry, T(0));
      return;
    }
    pass.backend.Multiply(sigma1_.Rows(0, pass.count), rx, T(0), ry);
  }
  void RBackward(const Pass<T>& pass, bool hessian, const Matrix& /*x*/, const Matrix& rx,
                 const Matrix& delta, const Matrix& rdelta, const Matrix& /*v*/, Matrix /*hv*/,
                 Matrix rdelta_in) override {
    if (rdelta_in.empty()) return;
    kernels::Backend<T>& be = pass.backend;
    be.Multiply(rdelta, sigma1_.Rows(0, pass.count), T(0), rdelta_in);
    if (hessian && !rx.empty()) {
      Matrix t = pass.scratch.Cols(0, width());
      be.Multiply(delta, sigma2_.Rows(0, pass.count), T(0), t);
      be.Multiply(t, rx, T(1), rdelta_in);
    }
  }

 private:
  int64_t width() const { return this->in_width(); }
  Activation activation_;
  Matrix sigma1_, sigma2_;  // σ'(x), σ''(x) of the current batch (Linearize)
};


void PlanActivation(PlanContext& /*ctx*/) {}  // no keys; the output has the input's shape

template <typename T>
std::unique_ptr<Layer<T>> MakeActivation(const LayerShape& shape) {
  return std::make_unique<ActivationLayer<T>>(shape);
}

constexpr LayerType Type(const char* name) {
  return {.name = name,
          .plan = &PlanActivation,
          .init = nullptr,
          .make_f32 = &MakeActivation<float>,
          .make_f64 = &MakeActivation<double>};
}

}  // namespace

const LayerType kActivationTypes[6] = {Type("relu"),    Type("tanh"),     Type("sigmoid"),
                                       Type("gelu"),    Type("softplus"), Type("identity")};

}  // namespace lethe::layers
