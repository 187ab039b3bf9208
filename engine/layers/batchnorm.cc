// Why the passes are arranged as they are (the maths is in batchnorm.h):
//
// A per-channel factor f (1 × C) acts on a row of C·P values through its expansion, the
// 1 × C·P row with f_c repeated over the channel's P positions: the rank-1 GEMM f·1ᵀ into
// the C × P reshape of that row (a copy when P = 1, vectors). Every row a pass needs (s and
// −m ⊙ s from the fixed statistics, γ, v_γ, v_β) is expanded in that pass from the pass's θ,
// constants or direction: O(C·P) work against the pass's O(count·C·P), and nothing to keep
// in step with the model's values.
// Per-channel sums are GEMMs of reshapes with a ones vector (kernels/backend.h): over the
// batch, ColumnSums then the C × P reshape times 1; per example, the (count·C) × P reshape of
// a contiguous count × C·P matrix times 1, the count × C matrix of per-example channel sums,
// whose products with the directions' γ and β blocks are the per-example dots.
//
// Nothing is kept per batch: x̂ is recomputed from x where a pass needs it (one scaled copy),
// so Linearize has nothing to do and the forward-pass cache nothing to save.
#include "engine/layers/batchnorm.h"

#include "engine/layers/norm_keys.h"

namespace lethe::layers {
namespace {

using kernels::Op;

// The keys the plan, the initialiser and the module each read: γ, β and ε as layernorm's,
// and the statistics' names.
struct BatchNormKeys : NormKeys {
  std::string running_mean, running_var;
  BatchNormKeys(SpecKeys& keys, const std::string& index)
      : NormKeys(keys),
        running_mean(keys.String("running_mean").value_or(index + ".running_mean")),
        running_var(keys.String("running_var").value_or(index + ".running_var")) {}
};

// Channels and positions per channel of an input shape: [C] → (C, 1), [C, H, W] → (C, H·W).
std::pair<int64_t, int64_t> ChannelsAndPositions(const Shape& in) {
  return in.size() == 3 ? std::make_pair(in[0], in[1] * in[2]) : std::make_pair(in[0], int64_t{1});
}

template <typename T>
class BatchNorm final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  using Backend = kernels::Backend<T>;

  explicit BatchNorm(const LayerShape& shape) : Layer<T>(shape) {
    LETHE_CHECK(shape.in == shape.out && (shape.in.size() == 1 || shape.in.size() == 3));
    SpecKeys keys(shape.spec, "batchnorm");
    // The statistics' names were recorded by the plan, so any index gives them.
    const BatchNormKeys k(keys, "");
    eps_ = k.eps;
    weight_ = FindTensor(shape.tensors, k.weight);
    bias_ = FindTensor(shape.tensors, k.bias);
    mean_ = FindTensor(shape.tensors, k.running_mean);
    var_ = FindTensor(shape.tensors, k.running_var);
    std::tie(channels_, positions_) = ChannelsAndPositions(shape.in);
  }

  void Allocate(Backend& be, int64_t rows) override {
    ones_ = be.Allocate(1, P());
    be.Fill(ones_, T(1));
    channel_ = be.Allocate(1, C());
    scale_ = be.Allocate(1, width());
    shift_ = be.Allocate(1, width());
    a_ = be.Allocate(1, width());
    row_ = be.Allocate(1, width());
    sums_ = be.Allocate(1, width());
    t_ = be.Allocate(rows, width());
    channel_sums_ = be.Allocate(rows, C());
  }
  // x̂ or δ ⊙ R{x} (count × C·P).
  int64_t ScratchWidth() const override { return width(); }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    Backend& be = pass.backend;
    Statistics(pass);
    Normalize(be, x, y);
    if (weight_ >= 0) {
      Expand(be, Value(pass, weight_), row_);
      be.ScaleColumns(T(1), y, row_, T(0), y);
    }
    if (bias_ >= 0) {
      Expand(be, Value(pass, bias_), row_);
      be.AddRow(row_, y);
    }
  }

  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& sinks) override {
    Backend& be = pass.backend;
    Statistics(pass);
    const bool wanted = sinks.grad || sinks.per_example || sinks.dots;
    if (trainable(weight_) && wanted) {
      Matrix t = t_.Rows(0, pass.count);  // δ ⊙ x̂
      Normalize(be, x, t);
      be.Multiply(delta, t, T(0), t);
      if (sinks.grad) ChannelSums(be, t, Slice(*sinks.grad, weight_));
      if (sinks.per_example || sinks.dots)
        PerExampleSinks(be, PerExampleChannelSums(be, t), weight_, sinks);
    }
    if (trainable(bias_) && wanted) {
      if (sinks.grad) ChannelSums(be, delta, Slice(*sinks.grad, bias_));
      if (sinks.per_example || sinks.dots)
        PerExampleSinks(be, PerExampleChannelSums(be, delta), bias_, sinks);
    }
    if (!delta_in.empty()) be.ScaleColumns(T(1), delta, Slope(pass), T(0), delta_in);
  }

  // δ_in = δ ⊙ (γ ⊙ s).
  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    Statistics(pass);
    pass.backend.ScaleColumns(T(1), delta, Slope(pass), T(0), delta_in);
  }

  void RForward(const Pass<T>& pass, const Matrix& x, const Matrix& rx, const Matrix& v,
                Matrix ry) override {
    Backend& be = pass.backend;
    Statistics(pass);
    if (rx.empty())
      be.Fill(ry, T(0));
    else
      be.ScaleColumns(T(1), rx, Slope(pass), T(0), ry);
    if (trainable(weight_)) {  // + v_γ ⊙ x̂
      Matrix xh = pass.scratch.Cols(0, width());
      Normalize(be, x, xh);
      Expand(be, Slice(v, weight_), row_);
      be.ScaleColumns(T(1), xh, row_, T(1), ry);
    }
    if (trainable(bias_)) {  // + v_β
      Expand(be, Slice(v, bias_), row_);
      be.AddRow(row_, ry);
    }
  }

  void RBackward(const Pass<T>& pass, bool hessian, const Matrix& x, const Matrix& rx,
                 const Matrix& delta, const Matrix& rdelta, const Matrix& v, Matrix hv,
                 Matrix rdelta_in) override {
    Backend& be = pass.backend;
    Statistics(pass);
    if (trainable(weight_)) {  // R{∇γ} = Σ R{δ} ⊙ x̂ (+ δ ⊙ s ⊙ R{x})
      Matrix t = t_.Rows(0, pass.count);
      Normalize(be, x, t);
      be.Multiply(rdelta, t, T(0), t);
      if (hessian && !rx.empty()) {
        Matrix u = pass.scratch.Cols(0, width());
        be.Multiply(delta, rx, T(0), u);
        be.ScaleColumns(T(1), u, scale_, T(1), t);
      }
      ChannelSums(be, t, Slice(hv, weight_));
    }
    if (trainable(bias_)) ChannelSums(be, rdelta, Slice(hv, bias_));
    if (rdelta_in.empty()) return;
    be.ScaleColumns(T(1), rdelta, Slope(pass), T(0), rdelta_in);
    if (hessian && trainable(weight_)) {  // + δ ⊙ v_γ ⊙ s
      Expand(be, Slice(v, weight_), row_);
      be.Multiply(row_, scale_, T(0), row_);
      be.ScaleColumns(T(1), delta, row_, T(1), rdelta_in);
    }
  }

 private:
  int64_t C() const { return channels_; }
  int64_t P() const { return positions_; }
  int64_t width() const { return this->in_width(); }
  // Whether tensor `index` is present and in θ.
  bool trainable(int index) const { return index >= 0 && this->shape_.tensors[index].trainable; }
  // Tensor `index` (1 × C) at the current point: θ, or the constants when fixed.
  Matrix Value(const Pass<T>& pass, int index) const {
    return Layer<T>::Value(pass, index, 1, C());
  }
  // Trainable tensor `index`'s block (1 × C) of a 1 × p row (a direction, a gradient).
  Matrix Slice(const Matrix& row, int index) const { return Layer<T>::Slice(row, index, 1, C()); }

  // row (1 × C·P) = f (1 × C, contiguous) repeated over each channel's positions.
  void Expand(Backend& be, const Matrix& f, Matrix row) const {
    if (P() == 1)
      be.Copy(f, row);
    else
      be.Gemm(Op::kNone, Op::kNone, T(1), f.Reshaped(C(), 1), ones_, T(0), row.Reshaped(C(), P()));
  }
  // The expanded s = (v + ε)^(−1/2) and −m ⊙ s from the pass's constants.
  void Statistics(const Pass<T>& pass) {
    Backend& be = pass.backend;
    be.InverseSqrt(Value(pass, var_), static_cast<T>(eps_), channel_);
    Expand(be, channel_, scale_);
    be.Multiply(Value(pass, mean_), channel_, T(0), channel_);
    Expand(be, channel_, shift_);
    be.Axpby(T(-1), shift_, T(0), shift_);
  }
  // x̂ = x ⊙ s + (−m ⊙ s) (expanded rows); out may alias x.
  void Normalize(Backend& be, const Matrix& x, Matrix out) const {
    be.ScaleColumns(T(1), x, scale_, T(0), out);
    be.AddRow(shift_, out);
  }
  // The expanded γ ⊙ s (s without a weight): J_x is the diagonal of it.
  const Matrix& Slope(const Pass<T>& pass) {
    if (weight_ < 0) return scale_;
    Expand(pass.backend, Value(pass, weight_), a_);
    pass.backend.Multiply(a_, scale_, T(0), a_);
    return a_;
  }
  // out (1 × C) += Σ over rows and each channel's positions of X (count × C·P).
  void ChannelSums(Backend& be, const Matrix& X, Matrix out) {
    if (P() == 1) {
      be.ColumnSums(T(1), X, T(1), out);
      return;
    }
    be.ColumnSums(T(1), X, T(0), sums_);
    be.Gemm(Op::kNone, Op::kTranspose, T(1), sums_.Reshaped(C(), P()), ones_, T(1),
            out.Reshaped(C(), 1));
  }
  // count × C: row i, channel c = Σ over c's positions of X_i (X itself for vectors).
  Matrix PerExampleChannelSums(Backend& be, const Matrix& X) {
    if (P() == 1) return X;
    const int64_t n = X.rows();
    Matrix contiguous = X;
    if (!X.contiguous()) {  // the reshape needs one row after the other
      contiguous = t_.Rows(0, n);
      be.Copy(X, contiguous);
    }
    Matrix out = channel_sums_.Rows(0, n);
    be.Gemm(Op::kNone, Op::kTranspose, T(1), contiguous.Reshaped(n * C(), P()), ones_, T(0),
            out.Reshaped(n * C(), 1));
    return out;
  }
  // Trainable tensor `index`'s per-example gradient rows (count × C) into the sinks, and
  // their dots with the directions' blocks.
  void PerExampleSinks(Backend& be, const Matrix& rows, int index,
                       const GradientSinks<T>& sinks) const {
    const int64_t offset = this->shape_.tensors[index].offset;
    if (sinks.per_example) be.Copy(rows, sinks.per_example->Cols(offset, C()));
    if (sinks.dots)
      be.Gemm(Op::kNone, Op::kTranspose, T(1), rows, sinks.dot_with->Cols(offset, C()), T(1),
              *sinks.dots);
  }

  int64_t channels_ = 0, positions_ = 1;
  double eps_ = NormKeys::kDefaultEps;
  int weight_ = -1, bias_ = -1, mean_ = -1, var_ = -1;  // indices in Tensors(), -1: absent
  Matrix ones_;                                         // 1 × P
  Matrix channel_;                                      // 1 × C: s, then m ⊙ s
  Matrix scale_, shift_;                                // 1 × C·P: s and −m ⊙ s, expanded
  Matrix a_, row_, sums_;  // 1 × C·P: γ ⊙ s, an expanded tensor or direction, column sums
  Matrix t_;               // rows × C·P, contiguous: δ ⊙ x̂ and friends
  Matrix channel_sums_;    // rows × C: per-example channel sums
};

// Keys and tensors: [C] on a vector [C], per channel on [C, H, W]. A model file read without
// data may not know a vector input's width yet: it comes from running_mean.
void PlanBatchNorm(PlanContext& ctx) {
  const BatchNormKeys k(ctx.keys(), ctx.index());
  // Recorded, so that the file alone names its statistics.
  ctx.keys().SetString("running_mean", k.running_mean);
  ctx.keys().SetString("running_var", k.running_var);
  Shape in = ctx.in();
  if (in.size() != 1 && in.size() != 3)
    ctx.Fail("takes features [C] or images [C, H, W], but its input has shape ", ShapeText(in));
  if (ShapeSize(in) < 0) {
    const std::optional<Shape> file = ctx.FileShape(k.running_mean);
    if (!file || in.size() != 1 || file->size() != 1 || (*file)[0] <= 0)
      ctx.Fail("the input width is unknown: give \"input\" in the spec");
    ctx.ResolveInput((*file)[0]);
    in = ctx.in();
    ctx.SetOut(in);
  }
  const int64_t channels = ChannelsAndPositions(in).first;
  if (k.weight) ctx.AddTensor(*k.weight, {channels});
  if (k.bias) ctx.AddTensor(*k.bias, {channels});
  ctx.AddTensor(k.running_mean, {channels}, /*fixed=*/true);
  ctx.AddTensor(k.running_var, {channels}, /*fixed=*/true);
}

// As torch.nn.BatchNorm's reset_parameters and reset_running_stats: γ = 1, β = 0, m = 0,
// v = 1.
void InitBatchNorm(const LayerShape& shape, Initializer& init) {
  SpecKeys keys(shape.spec, "batchnorm");
  const BatchNormKeys k(keys, "");
  for (const TensorInfo& t : shape.tensors)
    init.Fill(t, (k.weight && t.name == *k.weight) || t.name == k.running_var ? 1.0 : 0.0);
}

template <typename T>
std::unique_ptr<Layer<T>> MakeBatchNorm(const LayerShape& shape) {
  return std::make_unique<BatchNorm<T>>(shape);
}

}  // namespace

const LayerType kBatchNormType = {.name = "batchnorm",
                                  .plan = &PlanBatchNorm,
                                  .init = &InitBatchNorm,
                                  .make_f32 = &MakeBatchNorm<float>,
                                  .make_f64 = &MakeBatchNorm<double>};

}  // namespace lethe::layers
