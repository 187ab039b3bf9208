#include "engine/layers/linear.h"

#include <algorithm>

namespace lethe::layers {
namespace {

using kernels::Op;

template <typename T>
class Linear final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  Linear(const io::LayerSpec& spec, const LayerShape& shape)
      : Layer<T>(shape), weight_name_(spec.weight), bias_name_(spec.bias) {
    LETHE_CHECK(shape.weight_offset >= 0 && (shape.bias_offset >= 0) == !spec.bias.empty());
  }

  const char* type_name() const override { return "linear"; }
  std::vector<Tensor> Tensors() const override {
    std::vector<Tensor> t{{weight_name_, {out(), in()}, s().weight_offset}};
    if (has_bias()) t.push_back({bias_name_, {out()}, s().bias_offset});
    return t;
  }
  // x S_Wᵀ and the row dots of PerExampleGradientDots.
  int64_t ScratchWidth() const override { return out() + 1; }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    const Matrix b = Bias(pass.theta);
    pass.backend.Gemm(Op::kNone, Op::kTranspose, T(1), x, Weight(pass.theta), T(0), y);
    if (!b.empty()) pass.backend.AddRow(b, y);
  }

  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& sinks) override {
    kernels::Backend<T>& be = pass.backend;
    if (Matrix* grad = sinks.grad) {
      be.Gemm(Op::kTranspose, Op::kNone, T(1), delta, x, T(1), Weight(*grad));
      if (has_bias()) be.ColumnSums(T(1), delta, T(1), Bias(*grad));
    }
    if (Matrix* rows = sinks.per_example) {
      be.RowOuter(delta, x, rows->Cols(s().weight_offset, out() * in()));
      if (has_bias()) be.Copy(delta, rows->Cols(s().bias_offset, out()));
    }
    if (sinks.dots) {
      Matrix xs = pass.scratch.Cols(0, out());
      Matrix rowdots = pass.scratch.Cols(out(), 1);
      for (int64_t j = 0; j < sinks.dot_with->rows(); ++j) {
        const Matrix sj = sinks.dot_with->Row(j);
        Matrix out_j = sinks.dots->Cols(j, 1);
        be.Gemm(Op::kNone, Op::kTranspose, T(1), x, Weight(sj), T(0), xs);  // x S_Wᵀ
        be.RowDots(delta, xs, rowdots);
        be.Axpby(T(1), rowdots, T(1), out_j);
        if (has_bias()) be.Gemm(Op::kNone, Op::kTranspose, T(1), delta, Bias(sj), T(1), out_j);
      }
    }
    if (!delta_in.empty()) BackwardInput(pass, delta, delta_in);
  }

  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    pass.backend.Gemm(Op::kNone, Op::kNone, T(1), delta, Weight(pass.theta), T(0), delta_in);
  }

  void RForward(const Pass<T>& pass, const Matrix& x, const Matrix& rx, const Matrix& v,
                Matrix ry) override {
    kernels::Backend<T>& be = pass.backend;
    be.Gemm(Op::kNone, Op::kTranspose, T(1), x, Weight(v), T(0), ry);
    if (!rx.empty()) be.Gemm(Op::kNone, Op::kTranspose, T(1), rx, Weight(pass.theta), T(1), ry);
    if (has_bias()) be.AddRow(Bias(v), ry);
  }

  void RBackward(const Pass<T>& pass, bool hessian, const Matrix& x, const Matrix& rx,
                 const Matrix& delta, const Matrix& rdelta, const Matrix& v, Matrix hv,
                 Matrix rdelta_in) override {
    kernels::Backend<T>& be = pass.backend;
    Matrix hw = Weight(hv);
    be.Gemm(Op::kTranspose, Op::kNone, T(1), rdelta, x, T(1), hw);
    if (hessian && !rx.empty()) be.Gemm(Op::kTranspose, Op::kNone, T(1), delta, rx, T(1), hw);
    if (has_bias()) be.ColumnSums(T(1), rdelta, T(1), Bias(hv));
    if (!rdelta_in.empty()) {
      be.Gemm(Op::kNone, Op::kNone, T(1), rdelta, Weight(pass.theta), T(0), rdelta_in);
      if (hessian) be.Gemm(Op::kNone, Op::kNone, T(1), delta, Weight(v), T(1), rdelta_in);
    }
  }

  int64_t GroupWidth() const override { return out(); }
  // R{y} and R{δ} blocks (rows × out each), V_W and its product (out × in each).
  int64_t GroupElements(int64_t rows) const override { return out() * std::max(rows, in()); }
  void ReserveGroup(kernels::Backend<T>& backend, int64_t directions) override {
    if (group_ >= directions) return;
    stacked_ = backend.Allocate(directions * out(), in());
    products_ = backend.Allocate(directions * out(), in());
    group_ = directions;
  }
  void GroupedRForward(const Pass<T>& pass, const Matrix& x, const Matrix& V,
                       Matrix r_out) override {
    kernels::Backend<T>& be = pass.backend;
    const int64_t g = V.rows();
    LETHE_CHECK(g <= group_ && r_out.cols() == g * out());
    Matrix stacked = stacked_.Rows(0, g * out());
    for (int64_t j = 0; j < g; ++j) be.Copy(Weight(V.Row(j)), stacked.Rows(j * out(), out()));
    be.Gemm(Op::kNone, Op::kTranspose, T(1), x, stacked, T(0), r_out);
    if (has_bias())
      for (int64_t j = 0; j < g; ++j) be.AddRow(Bias(V.Row(j)), r_out.Cols(j * out(), out()));
  }
  void GroupedRBackward(const Pass<T>& pass, const Matrix& x, const Matrix& r_delta,
                        Matrix out_rows) override {
    kernels::Backend<T>& be = pass.backend;
    const int64_t g = out_rows.rows();
    LETHE_CHECK(g <= group_ && r_delta.cols() == g * out());
    Matrix products = products_.Rows(0, g * out());
    be.Gemm(Op::kTranspose, Op::kNone, T(1), r_delta, x, T(0), products);
    for (int64_t j = 0; j < g; ++j) {
      be.Axpby(T(1), products.Rows(j * out(), out()), T(1), Weight(out_rows.Row(j)));
      if (has_bias())
        be.ColumnSums(T(1), r_delta.Cols(j * out(), out()), T(1), Bias(out_rows.Row(j)));
    }
  }

  KroneckerBlock Kronecker() const override {
    return {.out = out(),
            .in = in(),
            .weight_offset = s().weight_offset,
            .bias_offset = s().bias_offset};
  }
  // S += [xᵀx, xᵀ1; 1ᵀx, 1ᵀ1], by blocks.
  void AddInputFactor(const Pass<T>& pass, const Matrix& x, const Matrix& ones, Matrix S) override {
    kernels::Backend<T>& be = pass.backend;
    be.Gemm(Op::kTranspose, Op::kNone, T(1), x, x, T(1), S.Rows(0, in()).Cols(0, in()));
    if (!has_bias()) return;
    be.Gemm(Op::kTranspose, Op::kNone, T(1), x, ones, T(1), S.Rows(0, in()).Cols(in(), 1));
    be.ColumnSums(T(1), x, T(1), S.Row(in()).Cols(0, in()));
    be.ColumnSums(T(1), ones, T(1), S.Row(in()).Cols(in(), 1));
  }
  void AddOutputFactor(const Pass<T>& pass, const Matrix& delta, const Matrix& a_delta,
                       Matrix gamma) override {
    pass.backend.Gemm(Op::kTranspose, Op::kNone, T(1), delta, a_delta, T(1), gamma);
  }

 private:
  const LayerShape& s() const { return this->shape_; }
  int64_t in() const { return s().in; }
  int64_t out() const { return s().out; }
  bool has_bias() const { return s().bias_offset >= 0; }
  // This layer's W (out × in) and b (1 × out) in a 1 × p row (θ, a direction, a gradient).
  Matrix Weight(const Matrix& row) const { return row.Block(s().weight_offset, out(), in()); }
  // Empty without a bias.
  Matrix Bias(const Matrix& row) const {
    return has_bias() ? row.Block(s().bias_offset, 1, out()) : Matrix();
  }

  std::string weight_name_, bias_name_;
  Matrix stacked_, products_;  // group · out × in: the stacked V_W and R{∇W}
  int64_t group_ = 0;
};

}  // namespace

template <typename T>
std::unique_ptr<Layer<T>> MakeLinear(const io::LayerSpec& spec, const LayerShape& shape) {
  return std::make_unique<Linear<T>>(spec, shape);
}

template std::unique_ptr<Layer<float>> MakeLinear<float>(const io::LayerSpec&, const LayerShape&);
template std::unique_ptr<Layer<double>> MakeLinear<double>(const io::LayerSpec&, const LayerShape&);

}  // namespace lethe::layers
