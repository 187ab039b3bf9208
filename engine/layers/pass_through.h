// The module of a layer that passes each row through unchanged: dropout (the identity in
// evaluation mode) and flatten (a reshape, and lethe's rows are already the row-major
// flattening of each example). y = x, so δ_in = δ, R{y} = R{x} (0 below the first layer
// with parameters) and R{δ_in} = R{δ}; no parameters, nothing kept between passes.
#pragma once

#include <memory>

#include "engine/layers/layer.h"

namespace lethe::layers {

template <typename T>
class PassThrough final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  explicit PassThrough(const LayerShape& shape) : Layer<T>(shape) {
    LETHE_CHECK(this->in_width() == this->out_width() && shape.tensors.empty());
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

template <typename T>
std::unique_ptr<Layer<T>> MakePassThrough(const LayerShape& shape) {
  return std::make_unique<PassThrough<T>>(shape);
}

}  // namespace lethe::layers
