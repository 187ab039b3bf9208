// Why the passes are arranged as they are (the maths is in layernorm.h):
//
// Everything LayerNorm's derivatives need of x is x̂ and s (count × d and count × 1): the
// Jacobian is ∂x̂/∂x = s M with M = I − 11ᵀ/d − x̂x̂ᵀ/d, symmetric, so J_xᵀ and J_x are the same
// product, ApplySM: h ↦ s (h − ⟨h⟩ − x̂ ⟨h ⊙ x̂⟩) (two row reductions and three row-scaled
// updates, never a d × d matrix). Backward and BackwardInput apply it to g = γ ⊙ δ, RForward
// to R{x} (R{x̂} = s M R{x}). Linearize keeps x̂ and s for the R passes (and the objective's
// forward-pass cache keeps them across directions); Forward and Backward recompute them,
// so a gradient pass never disturbs what Linearize kept.
//
// The exact R{δ_in} = s M h − s ρ δ_in − s m R{x̂} − s x̂ b with h = γ ⊙ R{δ} + v_γ ⊙ δ,
// ρ = ⟨x̂ ⊙ R{x}⟩, m = ⟨g ⊙ x̂⟩, b = ⟨g ⊙ R{x̂}⟩ is gathered as one row-scaled sum before the
// final multiplication by s:
//   R{δ_in} / s = h − sρ g + (sρ ⟨g⟩ − ⟨h⟩) 1 + (sρ m − ⟨h ⊙ x̂⟩ − b) x̂ − m R{x̂}
// (δ_in = s M g expanded), so that no second count × d temporary beyond g and R{x̂} is needed.
#include "engine/layers/layernorm.h"

#include <cmath>

#include "engine/layers/norm_keys.h"

namespace lethe::layers {
namespace {

using kernels::Op;

template <typename T>
class LayerNorm final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  using Backend = kernels::Backend<T>;

  explicit LayerNorm(const LayerShape& shape) : Layer<T>(shape) {
    SpecKeys keys(shape.spec, "layernorm");
    const NormKeys k(keys);
    eps_ = k.eps;
    weight_ = FindTensor(shape.tensors, k.weight);
    bias_ = FindTensor(shape.tensors, k.bias);
    LETHE_CHECK(shape.in == shape.out && d() > 0);
  }

  void Allocate(Backend& backend, int64_t rows) override {
    xhat_ = backend.Allocate(rows, d());
    s_ = backend.Allocate(rows, 1);
    ones_ = backend.Allocate(d(), 1);
    backend.Fill(ones_, T(1));
  }
  // x̂ or g (d), R{x̂} (d), and the per-row scalars (kColumns).
  int64_t ScratchWidth() const override { return 2 * d() + kColumns; }
  std::vector<Matrix> LinearizationState(int64_t count) const override {
    return {xhat_.Rows(0, count), s_.Rows(0, count)};
  }

  // x̂ = diag(s)(x − ⟨x⟩1ᵀ) written into y, then y = x̂ diag(γ) + 1βᵀ in place.
  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    Normalize(pass.backend, x, y, Column(pass, 0));
    Affine(pass.backend, WeightValue(pass), BiasValue(pass), y);
  }

  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& sinks) override {
    Backend& be = pass.backend;
    // (ApplySM uses columns 0 and 1)
    Matrix xh = pass.scratch.Cols(0, d()), s = Column(pass, 2);
    Normalize(be, x, xh, s);
    Matrix t = pass.scratch.Cols(d(), d());  // δ ⊙ x̂: the weight's per-example gradient
    const bool weight = trainable(weight_), bias = trainable(bias_);
    if (weight && (sinks.grad || sinks.per_example || sinks.dots)) be.Multiply(delta, xh, T(0), t);
    if (Matrix* grad = sinks.grad) {
      if (weight) be.ColumnSums(T(1), t, T(1), Weight(*grad));
      if (bias) be.ColumnSums(T(1), delta, T(1), Bias(*grad));
    }
    if (Matrix* rows = sinks.per_example) {
      if (weight) be.Copy(t, Columns(*rows, weight_));
      if (bias) be.Copy(delta, Columns(*rows, bias_));
    }
    if (sinks.dots) {  // ⟨s_γ, δᵢ ⊙ x̂ᵢ⟩ + ⟨s_β, δᵢ⟩ for every direction: two GEMMs
      if (weight)
        be.Gemm(Op::kNone, Op::kTranspose, T(1), t, Columns(*sinks.dot_with, weight_), T(1),
                *sinks.dots);
      if (bias)
        be.Gemm(Op::kNone, Op::kTranspose, T(1), delta, Columns(*sinks.dot_with, bias_), T(1),
                *sinks.dots);
    }
    if (!delta_in.empty()) InputGradient(pass, xh, s, delta, delta_in);
  }

  void Linearize(const Pass<T>& pass, const Matrix& x, bool /*second_order*/) override {
    Normalize(pass.backend, x, xhat(pass), s(pass));
  }
  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    InputGradient(pass, xhat(pass), s(pass), delta, delta_in);
  }

  // R{y} = γ ⊙ R{x̂} + v_γ ⊙ x̂ + v_β, R{x̂} = s M R{x}.
  void RForward(const Pass<T>& pass, const Matrix& /*x*/, const Matrix& rx, const Matrix& v,
                Matrix ry) override {
    Backend& be = pass.backend;
    const Matrix xh = xhat(pass);
    if (rx.empty()) {
      be.Fill(ry, T(0));
    } else {
      ApplySM(pass, xh, s(pass), rx, ry);
      Scale(be, WeightValue(pass), ry, ry);
    }
    if (trainable(weight_)) be.ScaleColumns(T(1), xh, Weight(v), T(1), ry);
    if (trainable(bias_)) be.AddRow(Bias(v), ry);
  }

  void RBackward(const Pass<T>& pass, bool hessian, const Matrix& /*x*/, const Matrix& rx,
                 const Matrix& delta, const Matrix& rdelta, const Matrix& v, Matrix hv,
                 Matrix rdelta_in) override {
    Backend& be = pass.backend;
    const Matrix xh = xhat(pass), s = this->s(pass);
    const bool second = hessian && !rx.empty();  // the terms in R{x̂} (zero when R{x} = 0)
    Matrix g = pass.scratch.Cols(0, d()), rxh = pass.scratch.Cols(d(), d());
    if (second) ApplySM(pass, xh, s, rx, rxh);
    // R{∇γ} = Σ R{δ} ⊙ x̂ (+ δ ⊙ R{x̂}), R{∇β} = Σ R{δ}; g is free until R{δ_in} below.
    if (trainable(weight_)) {
      be.Multiply(rdelta, xh, T(0), g);
      if (second) be.Multiply(delta, rxh, T(1), g);
      be.ColumnSums(T(1), g, T(1), Weight(hv));
    }
    if (trainable(bias_)) be.ColumnSums(T(1), rdelta, T(1), Bias(hv));
    if (rdelta_in.empty()) return;

    // h = γ ⊙ R{δ} (+ v_γ ⊙ δ) into R{δ_in}.
    Scale(be, WeightValue(pass), rdelta, rdelta_in);
    if (hessian && trainable(weight_)) be.ScaleColumns(T(1), delta, Weight(v), T(1), rdelta_in);
    if (!second) {
      ApplySM(pass, xh, s, rdelta_in, rdelta_in);
      return;
    }
    const T inv_d = T(1) / T(d());
    Matrix h_mean = Column(pass, 0), h_xh = Column(pass, 1), rho = Column(pass, 2),
           g_mean = Column(pass, 3), m = Column(pass, 4), b = Column(pass, 5),
           srho = Column(pass, 6);
    RowMean(be, rdelta_in, h_mean);
    be.RowDots(rdelta_in, xh, h_xh);
    be.RowDots(xh, rx, rho);
    be.Multiply(s, rho, T(0), srho);
    be.Axpby(inv_d, srho, T(0), srho);       // sρ
    Scale(be, WeightValue(pass), delta, g);  // g = γ ⊙ δ
    RowMean(be, g, g_mean);
    be.RowDots(g, xh, m);
    be.Axpby(inv_d, m, T(0), m);  // m = ⟨g ⊙ x̂⟩
    be.RowDots(g, rxh, b);
    // R{δ_in}/s = h − sρ g + (sρ⟨g⟩ − ⟨h⟩) 1 + (sρ m − ⟨h ⊙ x̂⟩ − b) x̂ − m R{x̂}
    be.ScaleRows(T(-1), srho, g, T(1), rdelta_in);
    be.Multiply(srho, g_mean, T(-1), h_mean);  // sρ⟨g⟩ − ⟨h⟩
    be.AddColumn(T(1), h_mean, rdelta_in);
    be.Axpby(-inv_d, b, -inv_d, h_xh);  // −⟨h ⊙ x̂⟩ − b (h_xh, b held d × the means)
    be.Multiply(srho, m, T(1), h_xh);   // + sρ m
    be.ScaleRows(T(1), h_xh, xh, T(1), rdelta_in);
    be.ScaleRows(T(-1), m, rxh, T(1), rdelta_in);
    be.ScaleRows(T(1), s, rdelta_in, T(0), rdelta_in);
  }

 private:
  // Per-row scalars RBackward keeps at once (columns of scratch after x̂/g and R{x̂}).
  static constexpr int64_t kColumns = 7;

  int64_t d() const { return this->in_width(); }
  // γ, β (1 × d) at the current point (θ, or the constants when frozen); empty when absent.
  Matrix WeightValue(const Pass<T>& pass) const {
    return weight_ >= 0 ? this->Value(pass, weight_, 1, d()) : Matrix();
  }
  Matrix BiasValue(const Pass<T>& pass) const {
    return bias_ >= 0 ? this->Value(pass, bias_, 1, d()) : Matrix();
  }
  // Their blocks of a 1 × p row (a direction, a gradient); empty when absent or frozen.
  Matrix Weight(const Matrix& row) const {
    return weight_ >= 0 ? this->Slice(row, weight_, 1, d()) : Matrix();
  }
  Matrix Bias(const Matrix& row) const {
    return bias_ >= 0 ? this->Slice(row, bias_, 1, d()) : Matrix();
  }
  // Whether tensor `index` is present and in θ.
  bool trainable(int index) const { return index >= 0 && this->shape_.tensors[index].trainable; }
  // Their columns in a count × p matrix of per-example rows or directions (trainable only).
  Matrix Columns(const Matrix& rows, int index) const {
    return rows.Cols(this->shape_.tensors[index].offset, d());
  }
  Matrix Column(const Pass<T>& pass, int64_t j) const { return pass.scratch.Cols(2 * d() + j, 1); }
  Matrix xhat(const Pass<T>& pass) const { return xhat_.Rows(0, pass.count); }
  Matrix s(const Pass<T>& pass) const { return s_.Rows(0, pass.count); }

  // out = (1/d) h 1: the row means.
  void RowMean(Backend& be, const Matrix& h, Matrix out) const {
    be.Gemm(Op::kNone, Op::kNone, T(1) / T(d()), h, ones_, T(0), out);
  }
  // x̂ = diag(s)(x − ⟨x⟩1ᵀ) into xh, s = (⟨(x − ⟨x⟩)²⟩ + ε)^(−1/2) into s.
  void Normalize(Backend& be, const Matrix& x, Matrix xh, Matrix s) const {
    RowMean(be, x, s);
    be.Copy(x, xh);
    be.AddColumn(T(-1), s, xh);
    be.RowDots(xh, xh, s);
    be.Axpby(T(1) / T(d()), s, T(0), s);
    be.InverseSqrt(s, static_cast<T>(eps_), s);
    be.ScaleRows(T(1), s, xh, T(0), xh);
  }
  // y = x̂ diag(γ) + 1βᵀ in place (each part only when present).
  void Affine(Backend& be, const Matrix& gamma, const Matrix& beta, Matrix y) const {
    if (!gamma.empty()) be.ScaleColumns(T(1), y, gamma, T(0), y);
    if (!beta.empty()) be.AddRow(beta, y);
  }
  // out = a diag(γ), or a when there is no weight (out may alias a).
  void Scale(Backend& be, const Matrix& gamma, const Matrix& a, Matrix out) const {
    if (!gamma.empty())
      be.ScaleColumns(T(1), a, gamma, T(0), out);
    else if (out.data() != a.data())
      be.Copy(a, out);
  }
  // out = s M h = s (h − ⟨h⟩ − x̂ ⟨h ⊙ x̂⟩); out may alias h. Uses scratch columns 0 and 1.
  void ApplySM(const Pass<T>& pass, const Matrix& xh, const Matrix& s, const Matrix& h,
               Matrix out) const {
    Backend& be = pass.backend;
    Matrix mean = Column(pass, 0), dots = Column(pass, 1);
    RowMean(be, h, mean);
    be.RowDots(h, xh, dots);
    if (out.data() != h.data()) be.Copy(h, out);
    be.AddColumn(T(-1), mean, out);
    be.ScaleRows(T(-1) / T(d()), dots, xh, T(1), out);
    be.ScaleRows(T(1), s, out, T(0), out);
  }
  // δ_in = s M (γ ⊙ δ).
  void InputGradient(const Pass<T>& pass, const Matrix& xh, const Matrix& s, const Matrix& delta,
                     Matrix delta_in) const {
    Scale(pass.backend, WeightValue(pass), delta, delta_in);
    ApplySM(pass, xh, s, delta_in, delta_in);
  }

  double eps_ = NormKeys::kDefaultEps;
  int weight_ = -1, bias_ = -1;  // indices in Tensors(), -1: absent
  Matrix xhat_, s_;  // x̂ (rows × d) and s (rows × 1) of the current batch (Linearize)
  Matrix ones_;      // d × 1: row means as a GEMM
};

// Keys and tensors: γ and β have the input's shape (any shape: the whole example is
// normalised); the output has it too. A model file read without data may not know the
// input width yet: a vector's comes from γ or β.
void PlanLayerNorm(PlanContext& ctx) {
  const NormKeys k(ctx.keys());
  Shape in = ctx.in();
  if (ShapeSize(in) < 0) {
    const std::optional<std::string>& named = k.weight ? k.weight : k.bias;
    std::optional<Shape> file;
    if (named) file = ctx.FileShape(*named);
    if (!file || in.size() != 1 || file->size() != 1 || (*file)[0] <= 0)
      ctx.Fail("the input width is unknown: give \"input\" in the spec");
    ctx.ResolveInput((*file)[0]);
    in = ctx.in();
    ctx.SetOut(in);
  }
  if (k.weight) ctx.AddTensor(*k.weight, in);
  if (k.bias) ctx.AddTensor(*k.bias, in);
}

// As torch.nn.LayerNorm's reset_parameters: γ = 1, β = 0.
void InitLayerNorm(const LayerShape& shape, Initializer& init) {
  SpecKeys keys(shape.spec, "layernorm");
  const NormKeys k(keys);
  for (const TensorInfo& t : shape.tensors)
    init.Fill(t, k.weight && t.name == *k.weight ? 1.0 : 0.0);
}

template <typename T>
std::unique_ptr<Layer<T>> MakeLayerNorm(const LayerShape& shape) {
  return std::make_unique<LayerNorm<T>>(shape);
}

}  // namespace

const LayerType kLayerNormType = {.name = "layernorm",
                                  .plan = &PlanLayerNorm,
                                  .init = &InitLayerNorm,
                                  .make_f32 = &MakeLayerNorm<float>,
                                  .make_f64 = &MakeLayerNorm<double>};

}  // namespace lethe::layers
