#include "engine/layers/conv2d.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/quote.h"

namespace lethe::layers {
namespace {

using kernels::Op;
using kernels::WindowGeometry;

// Bound on kernel, stride, padding and dilation: far beyond any image, and small enough
// that dilation·(kernel − 1) + 2·padding cannot overflow.
constexpr int64_t kMaxWindow = int64_t{1} << 24;

// The window keys as read from a spec (plan) or a planned layer's resolved keys (the
// module): kernel required, the others PyTorch's defaults.
struct WindowKeys {
  std::pair<int64_t, int64_t> kernel, stride{1, 1}, padding{0, 0}, dilation{1, 1};
};
WindowKeys ReadWindowKeys(SpecKeys& keys) {
  WindowKeys k;
  const auto kernel = keys.IntOrPair("kernel", 1, kMaxWindow);
  if (!kernel) keys.Fail("needs \"kernel\" (an int or [kh, kw])");
  k.kernel = *kernel;
  k.stride = keys.IntOrPair("stride", 1, kMaxWindow).value_or(k.stride);
  k.padding = keys.IntOrPair("padding", 0, kMaxWindow).value_or(k.padding);
  k.dilation = keys.IntOrPair("dilation", 1, kMaxWindow).value_or(k.dilation);
  return k;
}
// [C, H, W], or [H, W] as one channel; anything else: empty.
Shape ImageShape(const Shape& in) {
  if (in.size() == 3) return in;
  if (in.size() == 2) return {1, in[0], in[1]};
  return {};
}
WindowGeometry MakeGeometry(const Shape& image, const WindowKeys& k) {
  WindowGeometry g;
  g.channels = image[0], g.height = image[1], g.width = image[2];
  g.kernel_h = k.kernel.first, g.kernel_w = k.kernel.second;
  g.stride_h = k.stride.first, g.stride_w = k.stride.second;
  g.pad_h = k.padding.first, g.pad_w = k.padding.second;
  g.dilation_h = k.dilation.first, g.dilation_w = k.dilation.second;
  return g;
}

template <typename T>
class Conv2d final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  using Backend = kernels::Backend<T>;

  explicit Conv2d(const LayerShape& shape) : Layer<T>(shape) {
    SpecKeys keys(shape.spec, "conv2d");  // resolved and checked by PlanConv2d
    g_ = MakeGeometry(ImageShape(shape.in), ReadWindowKeys(keys));
    LETHE_CHECK(!shape.tensors.empty() && shape.tensors.size() <= 2 && shape.out.size() == 3 &&
                shape.out[1] == g_.out_h() && shape.out[2] == g_.out_w());
    out_ = shape.out[0];
  }

  // One column: the row dots of the per-example gradient dots.
  int64_t ScratchWidth() const override { return 1; }

  void Allocate(Backend& backend, int64_t rows) override {
    if (rows <= rows_) return;
    rows_ = rows;
    cols_ = backend.Allocate(rows * P(), K());
    d_ = backend.Allocate(rows * P(), out_);
    e_ = backend.Allocate(rows * P(), out_);
    if (has_bias() && this->has_params()) {
      ones_ = backend.Allocate(rows * P(), 1);
      backend.Fill(ones_, T(1));
    }
    if (group_ > 0) grouped_ = backend.Allocate(1, rows_ * P() * group_ * out_);
  }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    pass.backend.ConvForward(g_, x, WeightValue(pass), BiasValue(pass), T(0), y, cols_, d_);
  }

  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& sinks) override {
    Backend& be = pass.backend;
    const int64_t count = x.rows();
    if (this->has_params() && sinks.grad)
      be.ConvWeightGradient(g_, x, delta, T(1), Weight(*sinks.grad), Bias(*sinks.grad), cols_, d_);
    if (this->has_params() && (sinks.per_example || sinks.dots)) {
      // Per example: from the patches and the channels-last δ (one GEMM per example, or
      // per direction), as the maths at the top of conv2d.h.
      const Matrix d = ChannelsLast(be, delta, d_);
      const Matrix cols = Patches(be, x, cols_);
      if (Matrix* rows = sinks.per_example) {
        // One out × K product per example (its P positions summed inside the GEMM).
        for (int64_t i = 0; i < count; ++i) {
          const Matrix di = d.Rows(i * P(), P()), row = rows->Row(i);
          be.Gemm(Op::kTranspose, Op::kNone, T(1), di, cols.Rows(i * P(), P()), T(0), Weight(row));
          if (has_bias()) be.ColumnSums(T(1), di, T(0), Bias(row));
        }
      }
      if (sinks.dots) {
        Matrix xs = e_.Rows(0, count * P());
        Matrix rowdots = pass.scratch.Cols(0, 1);
        for (int64_t j = 0; j < sinks.dot_with->rows(); ++j) {
          const Matrix sj = sinks.dot_with->Row(j);
          be.Gemm(Op::kNone, Op::kTranspose, T(1), cols, Weight(sj), T(0), xs);  // X̃ S_Wᵀ
          if (has_bias()) be.AddRow(Bias(sj), xs);
          be.RowDots(d.Reshaped(count, P() * out_), xs.Reshaped(count, P() * out_), rowdots);
          be.Axpby(T(1), rowdots, T(1), sinks.dots->Cols(j, 1));
        }
      }
    }
    if (!delta_in.empty())
      be.ConvInputGradient(g_, delta, WeightValue(pass), T(0), delta_in, cols_, d_);
  }

  void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) override {
    pass.backend.ConvInputGradient(g_, delta, WeightValue(pass), T(0), delta_in, cols_, d_);
  }

  void RForward(const Pass<T>& pass, const Matrix& x, const Matrix& rx, const Matrix& v,
                Matrix ry) override {
    Backend& be = pass.backend;
    if (!this->has_params() && rx.empty()) {  // frozen, below every parameter: R{y} = 0
      be.Fill(ry, T(0));
      return;
    }
    // R{y} = conv(x; V_W, v_b) + conv(R{x}; W).
    T beta = T(0);
    if (this->has_params()) {
      be.ConvForward(g_, x, Weight(v), Bias(v), T(0), ry, cols_, d_);
      beta = T(1);
    }
    if (!rx.empty()) be.ConvForward(g_, rx, WeightValue(pass), Matrix(), beta, ry, cols_, d_);
  }

  void RBackward(const Pass<T>& pass, bool hessian, const Matrix& x, const Matrix& rx,
                 const Matrix& delta, const Matrix& rdelta, const Matrix& v, Matrix hv,
                 Matrix rdelta_in) override {
    Backend& be = pass.backend;
    // The δ terms (Hessian only) exist only where the weight is a parameter.
    const bool cross = hessian && this->has_params();
    if (this->has_params()) {
      be.ConvWeightGradient(g_, x, rdelta, T(1), Weight(hv), Bias(hv), cols_, d_);
      if (cross && !rx.empty())
        be.ConvWeightGradient(g_, rx, delta, T(1), Weight(hv), Matrix(), cols_, d_);
    }
    if (rdelta_in.empty()) return;
    be.ConvInputGradient(g_, rdelta, WeightValue(pass), T(0), rdelta_in, cols_, d_);
    if (cross) be.ConvInputGradient(g_, delta, Weight(v), T(1), rdelta_in, cols_, d_);
  }

  int64_t GroupWidth() const override { return this->has_params() ? out_ * P() : 0; }
  // Per direction: its block of the grouped product (rows·P × out) and its V_W and R{∇W}
  // (out × K each).
  int64_t GroupElements(int64_t rows) const override { return out_ * (rows * P() + 2 * K()); }
  void ReserveGroup(Backend& backend, int64_t directions) override {
    if (group_ >= directions) return;
    group_ = directions;
    stacked_ = backend.Allocate(directions * out_, K());
    stacked_bias_ = backend.Allocate(1, directions * out_);
    products_ = backend.Allocate(directions * out_, K());
    product_sums_ = backend.Allocate(1, directions * out_);
    grouped_ = backend.Allocate(1, rows_ * P() * directions * out_);
  }
  // The g directions' weights stacked, [V_W,1; …; V_W,g] (g·out × K), as one convolution
  // with g·out output channels: each example's output [g·out, P] = [g, out, OH, OW], block j
  // R{y}_j.
  void GroupedRForward(const Pass<T>& pass, const Matrix& x, const Matrix& V,
                       Matrix r_out) override {
    Backend& be = pass.backend;
    const int64_t g = V.rows(), count = x.rows();
    LETHE_CHECK(g <= group_ && count <= rows_ && r_out.cols() == g * out_ * P());
    Matrix stacked = stacked_.Rows(0, g * out_);
    Matrix stacked_bias = has_bias() ? stacked_bias_.Cols(0, g * out_) : Matrix();
    for (int64_t j = 0; j < g; ++j) {
      be.Copy(Weight(V.Row(j)), stacked.Rows(j * out_, out_));
      if (has_bias()) be.Copy(Bias(V.Row(j)), stacked_bias.Cols(j * out_, out_));
    }
    be.ConvForward(g_, x, stacked, stacked_bias, T(0), r_out, cols_,
                   grouped_.Block(0, count * P(), g * out_));
  }
  // R{δ} read the same way ([g·out, P] per example): one weight product, (g·out) × K, row
  // block j = R{∇W}_j (and the channel sums, R{∇b}_j).
  void GroupedRBackward(const Pass<T>& pass, const Matrix& x, const Matrix& r_delta,
                        Matrix out_rows) override {
    Backend& be = pass.backend;
    const int64_t g = out_rows.rows(), count = x.rows();
    LETHE_CHECK(g <= group_ && count <= rows_ && r_delta.cols() == g * out_ * P());
    Matrix products = products_.Rows(0, g * out_);
    Matrix sums = has_bias() ? product_sums_.Cols(0, g * out_) : Matrix();
    be.ConvWeightGradient(g_, x, r_delta, T(0), products, sums, cols_,
                          grouped_.Block(0, count * P(), g * out_));
    for (int64_t j = 0; j < g; ++j) {
      be.Axpby(T(1), products.Rows(j * out_, out_), T(1), Weight(out_rows.Row(j)));
      if (has_bias()) be.Axpby(T(1), sums.Cols(j * out_, out_), T(1), Bias(out_rows.Row(j)));
    }
  }

  KroneckerBlock Kronecker() const override {
    if (!this->has_params()) return {};
    return {.out = out_,
            .in = K(),
            .weight_offset = weight().offset,
            .bias_offset = has_bias() ? bias().offset : -1};
  }
  // S += Σᵢ Σ_t ã ãᵀ = [X̃ᵀX̃, X̃ᵀ1; 1ᵀX̃, P·count] over the batch's patches, by blocks.
  void AddInputFactor(const Pass<T>& pass, const Matrix& x, const Matrix& /*ones*/,
                      Matrix S) override {
    Backend& be = pass.backend;
    const Matrix cols = Patches(be, x, cols_);
    be.Gemm(Op::kTranspose, Op::kNone, T(1), cols, cols, T(1), S.Rows(0, K()).Cols(0, K()));
    if (!has_bias()) return;
    const Matrix ones = ones_.Rows(0, cols.rows());
    be.Gemm(Op::kTranspose, Op::kNone, T(1), cols, ones, T(1), S.Rows(0, K()).Cols(K(), 1));
    be.ColumnSums(T(1), cols, T(1), S.Row(K()).Cols(0, K()));
    be.ColumnSums(T(1), ones, T(1), S.Row(K()).Cols(K(), 1));
  }
  // Γ += (1/P) Σᵢ Σ_t (Jᵀe)_{i,t} (JᵀAe)_{i,t}ᵀ: the channels-last rows of both.
  void AddOutputFactor(const Pass<T>& pass, const Matrix& delta, const Matrix& a_delta,
                       Matrix gamma) override {
    Backend& be = pass.backend;
    const Matrix d = ChannelsLast(be, delta, d_), ad = ChannelsLast(be, a_delta, e_);
    be.Gemm(Op::kTranspose, Op::kNone, T(1.0 / static_cast<double>(P())), d, ad, T(1), gamma);
  }

 private:
  int64_t P() const { return g_.positions(); }
  int64_t K() const { return g_.patch_size(); }
  const TensorInfo& weight() const { return this->shape_.tensors[0]; }
  const TensorInfo& bias() const { return this->shape_.tensors[1]; }
  bool has_bias() const { return this->shape_.tensors.size() == 2; }
  // W (out × K) and b (1 × out) in a 1 × p row (a direction, a gradient): trainable only.
  Matrix Weight(const Matrix& row) const { return row.Block(weight().offset, out_, K()); }
  Matrix Bias(const Matrix& row) const {
    return has_bias() ? row.Block(bias().offset, 1, out_) : Matrix();
  }
  // W and b at the current point (θ, or the constants when frozen).
  Matrix WeightValue(const Pass<T>& pass) const { return this->Value(pass, 0, out_, K()); }
  Matrix BiasValue(const Pass<T>& pass) const {
    return has_bias() ? this->Value(pass, 1, 1, out_) : Matrix();
  }

  // x's patch matrix ((count·P) × K) in the first rows of `buffer`.
  Matrix Patches(Backend& be, const Matrix& x, const Matrix& buffer) const {
    Matrix cols = buffer.Rows(0, x.rows() * P());
    be.Im2Col(g_, x, cols);
    return cols;
  }
  // δ (count × out·P, each row [out, OH, OW]) channels-last: (count·P) × out in `buffer`.
  Matrix ChannelsLast(Backend& be, const Matrix& delta, const Matrix& buffer) const {
    const int64_t count = delta.rows();
    Matrix d = buffer.Rows(0, count * P());
    be.TransposeRows(out_, P(), delta, d.Reshaped(count, P() * out_));
    return d;
  }
  WindowGeometry g_;
  int64_t out_ = 0;
  int64_t rows_ = 0;           // examples the buffers hold
  // The convolution products (Backend::Conv*) take cols_ and d_ as their workspace; the
  // per-example products and K-FAC's factors use them (and e_) directly.
  Matrix cols_;                // (rows·P) × K: patches of x
  Matrix d_, e_;               // (rows·P) × out: channels-last δ, products
  Matrix ones_;                // (rows·P) × 1 of ones: the bias's column of S
  Matrix stacked_, products_;  // group·out × K: the stacked V_W and R{∇W}
  Matrix stacked_bias_, product_sums_;  // 1 × group·out: the stacked v_b and R{∇b}
  Matrix grouped_;             // 1 × rows·P·group·out: the grouped products
  int64_t group_ = 0;
};

// Keys, shapes and tensors. The input must be an image [C, H, W] (or [H, W], one channel)
// whose shape is known; "out" from the spec or the file's weight ([out, C, kh, kw], which
// must agree with the input's channels and the kernel).
void PlanConv2d(PlanContext& ctx) {
  SpecKeys& keys = ctx.keys();
  const std::string weight = keys.String("weight").value_or(ctx.index() + ".weight");
  const std::optional<std::string> bias = keys.String("bias");
  const std::optional<int64_t> spec_out = keys.Int("out", 1, std::numeric_limits<int64_t>::max());
  const WindowKeys k = ReadWindowKeys(keys);
  const Shape image = ImageShape(ctx.in());
  if (image.empty())
    ctx.Fail("takes an image [C, H, W] (or [H, W]), but its input has shape ", ShapeText(ctx.in()));
  for (int64_t d : image)
    if (d < 0) ctx.Fail("the shape of its input image is unknown: give \"input\" in the spec");
  const WindowGeometry g = MakeGeometry(image, k);
  if (g.height + 2 * g.pad_h < g.dilation_h * (g.kernel_h - 1) + 1 ||
      g.width + 2 * g.pad_w < g.dilation_w * (g.kernel_w - 1) + 1)
    ctx.Fail("kernel ", g.kernel_h, "x", g.kernel_w, " with dilation ", g.dilation_h, "x",
             g.dilation_w, " does not fit its input ", g.height, "x", g.width, " padded by ",
             g.pad_h, "x", g.pad_w);
  int64_t out = -1;
  if (std::optional<Shape> file = ctx.FileShape(weight)) {
    if (file->size() != 4)
      ctx.Fail("tensor \"", Escape(weight), "\" has shape ", ShapeText(*file),
               ": a conv2d weight must be [out, in, kh, kw]");
    out = (*file)[0];
    if (spec_out && *spec_out != out)
      ctx.Fail("spec says \"out\": ", *spec_out, " but tensor \"", Escape(weight), "\" has ", out,
               " output channels");
  } else if (spec_out) {
    out = *spec_out;
  } else {
    ctx.Fail("has no number of output channels (give \"out\" in the spec)");
  }
  keys.SetString("weight", weight);
  keys.SetInt("out", out);
  // AddTensor checks the file's shape against this one (channels and kernel included).
  ctx.AddTensor(weight, {out, g.channels, g.kernel_h, g.kernel_w});
  if (bias) ctx.AddTensor(*bias, {out});
  ctx.SetOut({out, g.out_h(), g.out_w()});
}

// As torch.nn.Conv2d's reset_parameters: kaiming_uniform_(a = √5) on the weight, which is
// U(±gain·√(3/fan_in)) with gain = √(2/(1 + a²)) = √(1/3), i.e. U(±1/√fan_in), and the
// bias U(±1/√fan_in); fan_in = in·kh·kw.
void InitConv2d(const LayerShape& shape, Initializer& init) {
  const Shape& w = shape.tensors[0].shape;
  const double bound = 1.0 / std::sqrt(static_cast<double>(w[1] * w[2] * w[3]));
  for (const TensorInfo& t : shape.tensors) init.Uniform(t, bound);
}

template <typename T>
std::unique_ptr<Layer<T>> MakeConv2d(const LayerShape& shape) {
  return std::make_unique<Conv2d<T>>(shape);
}

}  // namespace

const LayerType kConv2dType = {.name = "conv2d",
                               .plan = &PlanConv2d,
                               .init = &InitConv2d,
                               .make_f32 = &MakeConv2d<float>,
                               .make_f64 = &MakeConv2d<double>,
                               .input_use = InputUse::kShaped};

}  // namespace lethe::layers
