#include "engine/layers/linear.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/quote.h"

namespace lethe::layers {
namespace {

using kernels::Op;

// As engine/architecture.cc's bound on any dimension: widths are multiplied later.
constexpr int64_t kMaxLinearWidth = int64_t{1} << 31;

template <typename T>
class Linear final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  explicit Linear(const LayerShape& shape) : Layer<T>(shape) {
    LETHE_CHECK(!shape.tensors.empty() && shape.tensors.size() <= 2 && shape.in.size() == 1 &&
                shape.out.size() == 1);
  }
  // x S_Wᵀ and the row dots of PerExampleGradientDots.
  int64_t ScratchWidth() const override { return out() + 1; }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    const Matrix b = BiasValue(pass);
    pass.backend.Gemm(Op::kNone, Op::kTranspose, T(1), x, WeightValue(pass), T(0), y);
    if (!b.empty()) pass.backend.AddRow(b, y);
  }

  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& sinks) override {
    kernels::Backend<T>& be = pass.backend;
    if (!this->has_params()) {  // frozen: only the input's gradient
      if (!delta_in.empty()) BackwardInput(pass, delta, delta_in);
      return;
    }
    if (Matrix* grad = sinks.grad) {
      be.Gemm(Op::kTranspose, Op::kNone, T(1), delta, x, T(1), Weight(*grad));
      if (has_bias()) be.ColumnSums(T(1), delta, T(1), Bias(*grad));
    }
    if (Matrix* rows = sinks.per_example) {
      be.RowOuter(delta, x, rows->Cols(weight().offset, out() * in()));
      if (has_bias()) be.Copy(delta, rows->Cols(bias().offset, out()));
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
    pass.backend.Gemm(Op::kNone, Op::kNone, T(1), delta, WeightValue(pass), T(0), delta_in);
  }

  void RForward(const Pass<T>& pass, const Matrix& x, const Matrix& rx, const Matrix& v,
                Matrix ry) override {
    kernels::Backend<T>& be = pass.backend;
    if (!this->has_params()) {  // frozen: R{y} = W R{x}
      if (rx.empty())
        be.Fill(ry, T(0));
      else
        be.Gemm(Op::kNone, Op::kTranspose, T(1), rx, WeightValue(pass), T(0), ry);
      return;
    }
    be.Gemm(Op::kNone, Op::kTranspose, T(1), x, Weight(v), T(0), ry);
    if (!rx.empty()) be.Gemm(Op::kNone, Op::kTranspose, T(1), rx, WeightValue(pass), T(1), ry);
    if (has_bias()) be.AddRow(Bias(v), ry);
  }

  void RBackward(const Pass<T>& pass, bool hessian, const Matrix& x, const Matrix& rx,
                 const Matrix& delta, const Matrix& rdelta, const Matrix& v, Matrix hv,
                 Matrix rdelta_in) override {
    kernels::Backend<T>& be = pass.backend;
    if (!this->has_params()) {  // frozen: R{δ_in} = R{δ} W (no v_W, no cross term)
      if (!rdelta_in.empty())
        be.Gemm(Op::kNone, Op::kNone, T(1), rdelta, WeightValue(pass), T(0), rdelta_in);
      return;
    }
    Matrix hw = Weight(hv);
    be.Gemm(Op::kTranspose, Op::kNone, T(1), rdelta, x, T(1), hw);
    if (hessian && !rx.empty()) be.Gemm(Op::kTranspose, Op::kNone, T(1), delta, rx, T(1), hw);
    if (has_bias()) be.ColumnSums(T(1), rdelta, T(1), Bias(hv));
    if (!rdelta_in.empty()) {
      be.Gemm(Op::kNone, Op::kNone, T(1), rdelta, WeightValue(pass), T(0), rdelta_in);
      if (hessian) be.Gemm(Op::kNone, Op::kNone, T(1), delta, Weight(v), T(1), rdelta_in);
    }
  }

  int64_t GroupWidth() const override { return this->has_params() ? out() : 0; }
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
    if (!this->has_params()) return {};
    return {.out = out(),
            .in = in(),
            .weight_offset = weight().offset,
            .bias_offset = has_bias() ? bias().offset : -1};
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
  int64_t in() const { return this->shape_.in[0]; }
  int64_t out() const { return this->shape_.out[0]; }
  const TensorInfo& weight() const { return this->shape_.tensors[0]; }
  const TensorInfo& bias() const { return this->shape_.tensors[1]; }
  bool has_bias() const { return this->shape_.tensors.size() == 2; }
  // This layer's W (out × in) and b (1 × out) in a 1 × p row (a direction, a gradient); only
  // for a trainable layer.
  Matrix Weight(const Matrix& row) const { return row.Block(weight().offset, out(), in()); }
  Matrix Bias(const Matrix& row) const {  // empty without a bias
    return has_bias() ? row.Block(bias().offset, 1, out()) : Matrix();
  }
  // W and b at the current point (θ, or the constants when frozen).
  Matrix WeightValue(const Pass<T>& pass) const { return this->Value(pass, 0, out(), in()); }
  Matrix BiasValue(const Pass<T>& pass) const {
    return has_bias() ? this->Value(pass, 1, 1, out()) : Matrix();
  }

  Matrix stacked_, products_;  // group · out × in: the stacked V_W and R{∇W}
  int64_t group_ = 0;
};


// Keys, widths and tensors. "out" comes from the spec, else the file's weight, else (the
// model's last layer trained from a spec) the data; the input width from the previous
// layer, or from the file's weight when the model's input shape is not known yet.
void PlanLinear(PlanContext& ctx) {
  SpecKeys& keys = ctx.keys();
  const std::string weight = keys.String("weight").value_or(ctx.index() + ".weight");
  const std::optional<std::string> bias = keys.String("bias");
  const std::optional<int64_t> spec_out =
      keys.Int("out", 1, std::numeric_limits<int64_t>::max());
  int64_t in = ctx.InputWidth("a linear layer acts on feature vectors");
  int64_t out = -1;
  if (std::optional<Shape> file = ctx.FileShape(weight)) {
    if (file->size() != 2)
      ctx.Fail("tensor \"", Escape(weight), "\" has shape ", ShapeText(*file),
               ": a linear weight must be [out, in]");
    if (in < 0) {
      in = (*file)[1];
      ctx.ResolveInput(in);
    }
    if ((*file)[1] != in)
      ctx.Fail("takes ", (*file)[1], " inputs but the previous layer has ", in, " outputs");
    out = (*file)[0];
    if (spec_out && *spec_out != out)
      ctx.Fail("spec says \"out\": ", *spec_out, " but the width is ", out);
  } else if (spec_out) {
    out = *spec_out;
  } else {
    out = ctx.DataOutputWidth();
    if (out <= 0) ctx.Fail("has no output width (give \"out\" in the spec)");
  }
  if (in < 0) ctx.Fail("the input width is unknown: give \"input\" in the spec");
  if (out > kMaxLinearWidth)
    ctx.Fail("output width ", out, " exceeds the limit of ", kMaxLinearWidth);
  // Recorded, so that the file alone can be read and retrained from.
  keys.SetString("weight", weight);
  keys.SetInt("out", out);
  ctx.AddTensor(weight, {out, in});
  if (bias) ctx.AddTensor(*bias, {out});
  ctx.SetOut({out});
}

// As torch.nn.Linear's reset_parameters: W and b uniform in ±1/√in.
void InitLinear(const LayerShape& shape, Initializer& init) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(shape.in[0]));
  for (const TensorInfo& t : shape.tensors) init.Uniform(t, bound);
}

template <typename T>
std::unique_ptr<Layer<T>> MakeLinear(const LayerShape& shape) {
  return std::make_unique<Linear<T>>(shape);
}

}  // namespace

const LayerType kLinearType = {.name = "linear",
                               .plan = &PlanLinear,
                               .init = &InitLinear,
                               .make_f32 = &MakeLinear<float>,
                               .make_f64 = &MakeLinear<double>,
                               .input_use = InputUse::kFlat};

}  // namespace lethe::layers
