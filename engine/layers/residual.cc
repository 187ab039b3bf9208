// The maths: y = x + b(x; w) with b the body's composition b = f_k ∘ … ∘ f_1. Every
// derivative of the identity path is the identity and it has no parameters, so each pass
// is the body's pass plus the skip term:
//   backward      δ_in = δ + J_bᵀ δ,           ∇w = the body's ∇w with δ at its output
//   R-forward     R{y} = R{x} + R{b}            (R{b} the body's R pass from R{x})
//   R-backward    R{δ_in} = R{δ} + R{J_bᵀ δ}   (the body's R-backward from R{δ}, with δ)
// The Hessian and Gauss-Newton products differ only inside the body, whose layers apply
// their own second-order terms. The block drives its body with the same calls the
// objective drives the model with (engine/objective.cc), with its own buffers at the
// body's boundaries; as there, nothing below the body's first layer with parameters is
// backpropagated unless the block's own input gradient is wanted.
#include "engine/layers/residual.h"

#include <algorithm>

namespace lethe::layers {
namespace {

template <typename T>
class Residual final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  explicit Residual(const LayerShape& shape) : Layer<T>(shape) {
    for (const LayerShape& b : shape.body) body_.push_back(MakeLayer<T>(b));
    first_ = 0;
    while (first_ < size() && !body_[first_]->has_params()) ++first_;
  }

  void Allocate(kernels::Backend<T>& backend, int64_t rows) override {
    const int k = size();
    acts_.assign(k + 1, Matrix()), deltas_.assign(k + 1, Matrix());
    r_acts_.assign(k + 1, Matrix()), r_deltas_.assign(k + 1, Matrix());
    for (int j = 0; j <= k; ++j) {
      const int64_t width = j == 0 ? this->in_width() : body_[j - 1]->out_width();
      if (j > 0) acts_[j] = backend.Allocate(rows, width), r_acts_[j] = backend.Allocate(rows, width);
      if (j < k) deltas_[j] = backend.Allocate(rows, width), r_deltas_[j] = backend.Allocate(rows, width);
    }
    for (auto& layer : body_) layer->Allocate(backend, rows);
  }
  int64_t ScratchWidth() const override {
    int64_t w = 0;
    for (const auto& layer : body_) w = std::max(w, layer->ScratchWidth());
    return w;
  }
  // The body's activations and backpropagated gradients (Backward keeps them for the
  // Hessian's R-backward) and its layers' own state.
  std::vector<Matrix> LinearizationState(int64_t count) const override {
    std::vector<Matrix> m;
    for (int j = 1; j <= size(); ++j) m.push_back(acts_[j].Rows(0, count));
    for (int j = 1; j < size(); ++j) m.push_back(deltas_[j].Rows(0, count));
    for (const auto& layer : body_)
      for (const Matrix& s : layer->LinearizationState(count)) m.push_back(s);
    return m;
  }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    Matrix a = x;
    for (int j = 0; j < size(); ++j) {
      body_[j]->Forward(pass, a, Act(pass, j + 1));
      a = Act(pass, j + 1);
    }
    Skip(pass, x, a, y);
  }

  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& sinks) override {
    const int stop = delta_in.empty() ? first_ : 0;  // below: nothing to backpropagate
    for (int j = size() - 1; j >= stop; --j) {
      Matrix in = j > stop || !delta_in.empty() ? Delta(pass, j) : Matrix();
      body_[j]->Backward(pass, Input(pass, x, j), OutputDelta(pass, delta, j), in, sinks);
    }
    if (!delta_in.empty()) Skip(pass, delta, size() > 0 ? Delta(pass, 0) : delta, delta_in);
  }

  void Linearize(const Pass<T>& pass, const Matrix& x, bool second_order) override {
    for (int j = 0; j < size(); ++j) body_[j]->Linearize(pass, Input(pass, x, j), second_order);
  }

  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    Matrix d = delta;
    for (int j = size() - 1; j >= 0; --j) {
      body_[j]->BackwardInput(pass, d, RDelta(pass, j));  // r_deltas_ as scratch: K-FAC's e
      d = RDelta(pass, j);
    }
    Skip(pass, delta, d, delta_in);
  }

  void RForward(const Pass<T>& pass, const Matrix& x, const Matrix& rx, const Matrix& v,
                Matrix ry) override {
    Matrix r = rx;  // empty: R{x} = 0
    for (int j = 0; j < size(); ++j) {
      body_[j]->RForward(pass, Input(pass, x, j), r, v, RAct(pass, j + 1));
      r = RAct(pass, j + 1);
    }
    if (rx.empty()) {
      if (size() > 0)
        pass.backend.Copy(r, ry);
      else
        pass.backend.Fill(ry, T(0));
      return;
    }
    Skip(pass, rx, r, ry);
  }

  void RBackward(const Pass<T>& pass, bool hessian, const Matrix& x, const Matrix& rx,
                 const Matrix& delta, const Matrix& rdelta, const Matrix& v, Matrix hv,
                 Matrix rdelta_in) override {
    const int stop = rdelta_in.empty() ? first_ : 0;
    for (int j = size() - 1; j >= stop; --j) {
      Matrix in = j > stop || !rdelta_in.empty() ? RDelta(pass, j) : Matrix();
      const Matrix r_input = j == 0 ? rx : RAct(pass, j);
      body_[j]->RBackward(pass, hessian, Input(pass, x, j), r_input, OutputDelta(pass, delta, j),
                          OutputRDelta(pass, rdelta, j), v, hv, in);
    }
    if (!rdelta_in.empty()) Skip(pass, rdelta, size() > 0 ? RDelta(pass, 0) : rdelta, rdelta_in);
  }

 private:
  int size() const { return static_cast<int>(body_.size()); }
  // Views of the current batch's rows.
  Matrix Act(const Pass<T>& pass, int j) const { return acts_[j].Rows(0, pass.count); }
  Matrix RAct(const Pass<T>& pass, int j) const { return r_acts_[j].Rows(0, pass.count); }
  Matrix Delta(const Pass<T>& pass, int j) const { return deltas_[j].Rows(0, pass.count); }
  Matrix RDelta(const Pass<T>& pass, int j) const { return r_deltas_[j].Rows(0, pass.count); }
  // Body layer j's input, and the (R-)gradient at its output: the block's own at the top.
  Matrix Input(const Pass<T>& pass, const Matrix& x, int j) const {
    return j == 0 ? x : Act(pass, j);
  }
  Matrix OutputDelta(const Pass<T>& pass, const Matrix& delta, int j) const {
    return j == size() - 1 ? delta : Delta(pass, j + 1);
  }
  Matrix OutputRDelta(const Pass<T>& pass, const Matrix& rdelta, int j) const {
    return j == size() - 1 ? rdelta : RDelta(pass, j + 1);
  }
  // out = a + b: the skip connection.
  static void Skip(const Pass<T>& pass, const Matrix& a, const Matrix& b, Matrix out) {
    pass.backend.Copy(b, out);
    pass.backend.Axpby(T(1), a, T(1), out);
  }

  std::vector<std::unique_ptr<Layer<T>>> body_;
  int first_ = 0;  // the body's first layer with parameters
  // At the body's boundaries (j = 0: the block's input; j = k: the body's output):
  // activations (1..k), backpropagated gradients (0..k-1) and their R counterparts.
  std::vector<Matrix> acts_, deltas_, r_acts_, r_deltas_;
};

void PlanResidual(PlanContext& ctx) {
  // An empty body would make y = 2x: a missing or misspelt body, never a block anyone meant
  // (the exporter refuses an empty Residual too).
  if (ctx.spec().body.empty())
    ctx.Fail("needs a non-empty \"layers\" body (y = x + body(x))");
  const Shape out = ctx.PlanBody(ctx.in());
  if (out != ctx.in())
    ctx.Fail("the body gives shape ", ShapeText(out), " but y = x + body(x) needs its input's, ",
             ShapeText(ctx.in()));
  ctx.SetOut(out);
}

template <typename T>
std::unique_ptr<Layer<T>> MakeResidual(const LayerShape& shape) {
  return std::make_unique<Residual<T>>(shape);
}

}  // namespace

const LayerType kResidualType = {.name = "residual",
                                 .plan = &PlanResidual,
                                 .init = nullptr,  // the body's layers initialise themselves
                                 .make_f32 = &MakeResidual<float>,
                                 .make_f64 = &MakeResidual<double>};

}  // namespace lethe::layers
