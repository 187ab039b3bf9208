#include "engine/layers/embedding_bag.h"

#include <cmath>
#include <cstdio>
#include <string>

#include "common/quote.h"
#include "kernels/embedding_bag_shape.h"

namespace lethe::layers {
namespace {

// As engine/architecture.cc's bound on any dimension.
constexpr int64_t kMaxDim = int64_t{1} << 31;

// The keys that shape the computation (mode, padding_idx), read the same way by the plan and
// by the compute module (which gets the resolved spec).
struct BagOptions {
  bool mean = true;
  int64_t padding_idx = -1;  // −1: none
};
BagOptions ReadOptions(SpecKeys& keys) {
  BagOptions o;
  o.mean = keys.Choice("mode", {"mean", "sum"}).value_or("mean") == "mean";
  o.padding_idx = keys.Int("padding_idx", 0, kernels::kMaxExactTokenId - 1).value_or(-1);
  return o;
}
BagOptions ReadOptions(const LayerShape& shape) {
  SpecKeys keys(shape.spec, "embedding_bag");
  return ReadOptions(keys);
}

template <typename T>
class EmbeddingBag final : public Layer<T> {
 public:
  using Matrix = kernels::Matrix<T>;
  explicit EmbeddingBag(const LayerShape& shape) : Layer<T>(shape), options_(ReadOptions(shape)) {
    LETHE_CHECK(shape.tensors.size() == 1 && shape.tensors[0].shape.size() == 2 &&
                shape.in.size() == 1 && shape.out.size() == 1 && shape.out[0] == dim());
  }
  // The bags of a direction and their row dots with δ (the per-example dot products).
  int64_t ScratchWidth() const override { return dim() + 1; }

  void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) override {
    pass.backend.EmbeddingBag(x, this->Value(pass, 0, num(), dim()), options_.padding_idx,
                              options_.mean, y);
  }

  void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                const GradientSinks<T>& sinks) override {
    kernels::Backend<T>& be = pass.backend;
    if (!delta_in.empty()) BackwardInput(pass, delta, delta_in);
    if (!this->has_params()) return;  // frozen
    if (Matrix* grad = sinks.grad) Adjoint(be, x, delta, Weight(*grad));
    if (Matrix* rows = sinks.per_example)
      be.EmbeddingBagPerExample(x, delta, options_.padding_idx, options_.mean,
                                rows->Cols(weight().offset, num() * dim()));
    if (sinks.dots) {
      Matrix bags = pass.scratch.Cols(0, dim()), rowdots = pass.scratch.Cols(dim(), 1);
      for (int64_t j = 0; j < sinks.dot_with->rows(); ++j) {
        be.EmbeddingBag(x, Weight(sinks.dot_with->Row(j)), options_.padding_idx, options_.mean,
                        bags);  // B(x) S_W
        be.RowDots(delta, bags, rowdots);
        be.Axpby(T(1), rowdots, T(1), sinks.dots->Cols(j, 1));
      }
    }
  }

  // Token ids have no derivative: whatever asks for δ_in gets zeros.
  void BackwardInput(const Pass<T>& pass, const Matrix& /*delta*/, Matrix delta_in) override {
    pass.backend.Fill(delta_in, T(0));
  }

  void RForward(const Pass<T>& pass, const Matrix& x, const Matrix& /*rx*/, const Matrix& v,
                Matrix ry) override {
    if (!this->has_params()) {  // frozen, and R{x} = 0: ids do not move
      pass.backend.Fill(ry, T(0));
      return;
    }
    pass.backend.EmbeddingBag(x, Weight(v), options_.padding_idx, options_.mean, ry);
  }

  void RBackward(const Pass<T>& pass, bool /*hessian*/, const Matrix& x, const Matrix& /*rx*/,
                 const Matrix& /*delta*/, const Matrix& rdelta, const Matrix& /*v*/, Matrix hv,
                 Matrix rdelta_in) override {
    if (!rdelta_in.empty()) pass.backend.Fill(rdelta_in, T(0));
    if (this->has_params()) Adjoint(pass.backend, x, rdelta, Weight(hv));
  }

 private:
  const TensorInfo& weight() const { return this->shape_.tensors[0]; }
  int64_t num() const { return weight().shape[0]; }
  int64_t dim() const { return weight().shape[1]; }
  // W's block (num × dim) of a 1 × p row (a direction, a gradient).
  Matrix Weight(const Matrix& row) const { return row.Block(weight().offset, num(), dim()); }
  void Adjoint(kernels::Backend<T>& be, const Matrix& x, const Matrix& delta, Matrix grad) {
    be.EmbeddingBagAdjoint(x, delta, options_.padding_idx, options_.mean, grad);
  }

  const BagOptions options_;
};

// Keys and tensors. num_embeddings and dim come from the spec, else from the file's weight;
// the input is [L] (its width the number of ids per example).
void PlanEmbeddingBag(PlanContext& ctx) {
  SpecKeys& keys = ctx.keys();
  const std::string weight = keys.String("weight").value_or(ctx.index() + ".weight");
  const std::optional<int64_t> spec_num = keys.Int("num_embeddings", 1, kernels::kMaxExactTokenId);
  const std::optional<int64_t> spec_dim = keys.Int("dim", 1, kMaxDim);
  const BagOptions options = ReadOptions(keys);
  if (ctx.index() != "0")
    ctx.Fail(
        "must be the model's first layer: it reads the token ids of the data, and ids "
        "computed by other layers would have no derivative");
  const int64_t length = ctx.InputWidth("an embedding_bag reads one row of token ids [L]");
  if (length < 0) ctx.Fail("the number of ids per example is unknown: give \"input\": [L]");
  int64_t num = spec_num.value_or(-1), dim = spec_dim.value_or(-1);
  if (std::optional<Shape> file = ctx.FileShape(weight)) {
    if (file->size() != 2)
      ctx.Fail("tensor \"", Escape(weight), "\" has shape ", ShapeText(*file),
               ": an embedding table must be [num_embeddings, dim]");
    if (spec_num && *spec_num != (*file)[0])
      ctx.Fail("spec says \"num_embeddings\": ", *spec_num, " but tensor \"", Escape(weight), "\" has ",
               (*file)[0], " rows");
    if (spec_dim && *spec_dim != (*file)[1])
      ctx.Fail("spec says \"dim\": ", *spec_dim, " but tensor \"", Escape(weight), "\" has ", (*file)[1],
               " columns");
    num = (*file)[0];
    dim = (*file)[1];
  }
  if (num < 0 || dim < 0) ctx.Fail("needs \"num_embeddings\" and \"dim\" (the table's shape)");
  if (num > kernels::kMaxExactTokenId)
    ctx.Fail("num_embeddings ", num, " exceeds ", kernels::kMaxExactTokenId,
             " (ids are exact in float32 only below 2^24)");
  if (options.padding_idx >= num)
    ctx.Fail("padding_idx ", options.padding_idx, " is not in [0, ", num, ")");
  // Recorded, so that the file alone can be read and retrained from.
  keys.SetString("weight", weight);
  keys.SetInt("num_embeddings", num);
  keys.SetInt("dim", dim);
  ctx.AddTensor(weight, {num, dim});
  ctx.SetOut({dim});
}

// As torch.nn.EmbeddingBag's reset_parameters: N(0, 1), then the padding row zeroed.
void InitEmbeddingBag(const LayerShape& shape, Initializer& init) {
  const TensorInfo& t = shape.tensors[0];
  init.Normal(t, 1.0);
  const BagOptions options = ReadOptions(shape);
  if (options.padding_idx < 0) return;
  double* row = init.Values(t) + options.padding_idx * t.shape[1];
  for (int64_t d = 0; d < t.shape[1]; ++d) row[d] = 0.0;
}

// Where the data meet the model: X must be integer ids in [0, num_embeddings) (or the
// padding id), named by row. The kernels check again, as an internal invariant.
void CheckTokenIds(const LayerShape& shape, const double* X, int64_t n, const std::string& path) {
  const int64_t num = shape.tensors[0].shape[0], length = shape.in[0];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t l = 0; l < length; ++l) {
      const double id = X[i * length + l];
      if (!(id >= 0 && id < static_cast<double>(num))) {
        // The id as the file has it: X came from integers, which "%.0f" writes exactly
        // (streaming the double wrote 2^62 as 4.61169e+18).
        char text[400];
        std::snprintf(text, sizeof text, "%.0f", id);
        Fail(path, ": X row ", i, " holds token id ", text, " at position ", l, ", outside [0, ",
             num, ") (the embedding_bag's num_embeddings)");
      }
    }
}

template <typename T>
std::unique_ptr<Layer<T>> MakeEmbeddingBag(const LayerShape& shape) {
  return std::make_unique<EmbeddingBag<T>>(shape);
}

}  // namespace

const LayerType kEmbeddingBagType = {.name = "embedding_bag",
                                     .plan = &PlanEmbeddingBag,
                                     .init = &InitEmbeddingBag,
                                     .make_f32 = &MakeEmbeddingBag<float>,
                                     .make_f64 = &MakeEmbeddingBag<double>,
                                     .input_use = InputUse::kShaped,
                                     .check_token_ids = &CheckTokenIds};

}  // namespace lethe::layers
