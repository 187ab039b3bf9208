#include "engine/objective.h"

#include <algorithm>

#include "common/error.h"
#include "engine/distributed/objective_reduce.h"
#include "engine/streamed_rows.h"

namespace lethe {

using kernels::Op;

void ObjectiveOptions::Validate() const {
  if (batch_size < 1) Fail("ObjectiveOptions::batch_size = ", batch_size, ": must be >= 1");
  if (group_elements < 1)
    Fail("ObjectiveOptions::group_elements = ", group_elements, ": must be >= 1");
  if (cache_elements < 0)
    Fail("ObjectiveOptions::cache_elements = ", cache_elements, ": must be >= 0");
}

// The layers, and buffers for one batch, allocated once: activations, backpropagated
// gradients and their R-operator counterparts at every layer boundary (boundary l is the
// input of layer l). The layers keep their own per-batch state (σ', σ'' …).
template <typename T>
struct Objective<T>::Workspace {
  std::vector<std::unique_ptr<layers::Layer<T>>> layers;
  int first = 0;  // the first layer with parameters: R{x} = 0 and backpropagation stop there
  std::vector<Matrix> acts, deltas, r_acts, r_deltas;
  Matrix scratch, losses;
  Matrix constants;   // 1 × max(1, q): Architecture::constants on the device
  int64_t count = 0;  // rows of the current batch
  Matrix x_block;     // B × d: the current batch's rows when X is streamed (DeviceData::source)
  // The first layer's products for a group of directions at once (see
  // CurvatureProductRows): R{y} for every direction of the group side by side (batch ×
  // group·width) and their R{δ}; the layer keeps its own group buffers.
  Matrix group_r_out, group_r_delta;
  int64_t group = 0;  // directions the group buffers hold
  // What a curvature product's passes compute from θ alone, kept for every batch of the
  // full range while it fits in ObjectiveOptions::cache_elements: the activations, (for the
  // Hessian) the backpropagated loss gradients, and each layer's linearisation (σ', σ'').
  // A solve applies the curvature at one θ many times; with this each application skips
  // the forward pass (on a softmax regression one of its three products with the data).
  // Valid while θ equals cache_theta element for element and the curvature is the same;
  // the data never change.
  struct Cache {
    Matrix theta;  // 1 × p: the θ it was filled at
    bool hessian = false, valid = false;
    std::vector<std::vector<Matrix>> batches;  // per batch, in CachedState's layout
  } cache;
  // The matrices of one batch that the cache keeps, in a fixed order. The Gauss-Newton
  // product computes no deltas and no σ'': it keeps (unused) stale ones, for one layout.
  std::vector<Matrix> CachedState(int64_t count) const {
    std::vector<Matrix> m;
    for (size_t l = 1; l < acts.size(); ++l) m.push_back(acts[l].Rows(0, count));
    for (size_t l = first + 1; l < deltas.size(); ++l) m.push_back(deltas[l].Rows(0, count));
    for (size_t l = first; l < layers.size(); ++l)
      for (const Matrix& s : layers[l]->LinearizationState(count)) m.push_back(s);
    return m;
  }
};

template <typename T>
Objective<T>::Objective(kernels::Backend<T>& backend, const Architecture& arch, DeviceData<T> data,
                        const ObjectiveOptions& options)
    : backend_(backend), arch_(arch), data_(std::move(data)), options_(options) {
  options_.Validate();
  LETHE_CHECK(data_.d() == arch_.input_dim);
  LETHE_CHECK(data_.streamed() ? data_.source->rows() == data_.n() : data_.X.rows() == data_.n());
  LETHE_CHECK(arch_.layers.size() == arch_.spec.layers.size());
  const int64_t B = std::max<int64_t>(1, std::min(options_.batch_size, data_.n()));
  const size_t L = arch_.layers.size();
  ws_ = std::make_unique<Workspace>();
  int64_t scratch = 1;
  for (size_t l = 0; l < L; ++l) {
    ws_->layers.push_back(layers::MakeLayer<T>(arch_.layers[l]));
    ws_->layers.back()->Allocate(backend_, B);
    scratch = std::max(scratch, ws_->layers.back()->ScratchWidth());
  }
  ws_->first = 0;
  while (ws_->first < static_cast<int>(L) && !ws_->layers[ws_->first]->has_params()) ++ws_->first;
  LETHE_CHECK(ws_->first < static_cast<int>(L), "a model without parameters");
  auto width = [&](size_t l) {
    return l == 0 ? arch_.input_dim : arch_.layers[l - 1].out_width();
  };
  for (size_t l = 0; l <= L; ++l) {
    ws_->acts.push_back(l == 0 ? Matrix() : backend_.Allocate(B, width(l)));
    ws_->deltas.push_back(backend_.Allocate(B, width(l)));
    ws_->r_acts.push_back(backend_.Allocate(B, width(l)));
    ws_->r_deltas.push_back(backend_.Allocate(B, width(l)));
  }
  ws_->scratch = backend_.Allocate(B, scratch);
  if (data_.streamed()) ws_->x_block = backend_.Allocate(B, arch_.input_dim);
  ws_->losses = backend_.Allocate(B, 1);
  // The fixed tensors, converted to T once (an empty row stands in for none).
  const std::vector<double>& c = arch_.constants;
  ws_->constants = backend_.Zeros(1, std::max<int64_t>(1, static_cast<int64_t>(c.size())));
  if (!c.empty()) {
    std::vector<T> host(c.begin(), c.end());
    backend_.Upload(host.data(), ws_->constants);
  }
}

template <typename T>
Objective<T>::~Objective() = default;

template <typename T>
layers::Pass<T> Objective<T>::MakePass(const Matrix& theta) const {
  return {.backend = backend_,
          .theta = theta,
          .constants = ws_->constants,
          .count = ws_->count,
          .scratch = ws_->scratch.Rows(0, ws_->count)};
}

template <typename T>
typename Objective<T>::Matrix Objective<T>::InputRows(int64_t begin, int64_t count) {
  if (!data_.streamed()) return data_.X.Rows(begin, count);
  Matrix x = ws_->x_block.Rows(0, count);
  data_.source->Read(begin, count, x);
  return x;
}

template <typename T>
void Objective<T>::Forward(const Matrix& theta, int64_t begin, int64_t count) {
  Workspace& ws = *ws_;
  ws.count = count;
  const layers::Pass<T> pass = MakePass(theta);
  ws.acts[0] = InputRows(begin, count);
  Matrix x = ws.acts[0];
  for (size_t l = 0; l < ws.layers.size(); ++l) {
    Matrix y = ws.acts[l + 1].Rows(0, count);
    ws.layers[l]->Forward(pass, x, y);
    x = y;
  }
}

// Reverse mode from δ_L = ∂(scaled loss)/∂f, held in deltas[L], down to the first layer
// with parameters (below it nothing needs δ).
template <typename T>
void Objective<T>::Backward(const Matrix& theta, int64_t count, const Sinks& sinks) {
  Workspace& ws = *ws_;
  LETHE_CHECK(count == ws.count);
  const layers::Pass<T> pass = MakePass(theta);
  for (int l = static_cast<int>(ws.layers.size()) - 1; l >= ws.first; --l) {
    Matrix delta_in = l > ws.first ? ws.deltas[l].Rows(0, count) : Matrix();
    ws.layers[l]->Backward(pass, ws.acts[l].Rows(0, count), ws.deltas[l + 1].Rows(0, count),
                           delta_in, sinks);
  }
}

template <typename T>
double Objective<T>::ValueAndGradient(const Matrix& theta, Matrix grad) {
  return BatchValueAndGradient(theta, 0, num_examples(), grad);
}

template <typename T>
double Objective<T>::BatchValueAndGradient(const Matrix& theta, int64_t first, int64_t n,
                                           Matrix grad) {
  // Over all rows, distributed: each rank sums its own with weight 1/N (N the global n),
  // and one allreduce adds the ranks' gradients and loss sums (docs/distributed.md). A
  // rank may hold none of the rows then (unlearn's forget set lives on the ranks that
  // hold its rows): it adds zeros to the reduction.
  const bool all_ranks = distributed() && first == 0 && n == num_examples();
  LETHE_CHECK(first >= 0 && (n > 0 || all_ranks) && first + n <= num_examples());
  return ValueAndGradientSums(theta, first, n, all_ranks ? global_examples() : n, all_ranks,
                              grad);
}

template <typename T>
double Objective<T>::SharedBatchValueAndGradient(const Matrix& theta, int64_t first, int64_t n,
                                                 int64_t global_count, Matrix grad) {
  if (!distributed()) {
    LETHE_CHECK(n == global_count);
    return BatchValueAndGradient(theta, first, n, grad);
  }
  LETHE_CHECK(first >= 0 && n >= 0 && first + n <= num_examples() && global_count > 0);
  return ValueAndGradientSums(theta, first, n, global_count, /*reduce=*/true, grad);
}

template <typename T>
double Objective<T>::ValueAndGradientSums(const Matrix& theta, int64_t first, int64_t n,
                                          int64_t scale_n, bool reduce, Matrix grad) {
  LETHE_CHECK(theta.rows() == 1 && theta.cols() == num_params());
  const bool want_grad = !grad.empty();
  if (want_grad) {
    LETHE_CHECK(grad.rows() == 1 && grad.cols() == num_params());
    backend_.Fill(grad, T(0));
  }
  const size_t L = arch_.layers.size();
  double loss_sum = 0;
  for (int64_t done = 0; done < n; done += ws_->losses.rows()) {
    const int64_t count = std::min(ws_->losses.rows(), n - done);
    const int64_t begin = first + done;
    Forward(theta, begin, count);
    Matrix f = ws_->acts[L].Rows(0, count);
    Matrix y = data_.Y.Rows(begin, count);
    Matrix losses = ws_->losses.Rows(0, count);
    backend_.LossValues(arch_.spec.loss, f, y, losses);
    loss_sum += static_cast<double>(backend_.Sum(losses));
    if (want_grad) {
      backend_.LossGradient(arch_.spec.loss, T(1.0 / scale_n), f, y,
                            ws_->deltas[L].Rows(0, count));
      Backward(theta, count, {.grad = &grad});
    }
  }
  if (reduce) {
    std::vector<double> sums{loss_sum};
    distributed::AllreduceSum(*comm_, backend_,
                              want_grad ? std::vector<Matrix>{grad} : std::vector<Matrix>{}, &sums);
    loss_sum = sums[0];
  }
  const double l2 = arch_.spec.l2;
  if (want_grad && l2 != 0) backend_.Axpby(T(l2), theta, T(1), grad);
  double linear = 0;
  if (!linear_.empty()) {
    const double scale = 1.0 / static_cast<double>(global_examples());
    if (want_grad) backend_.Axpby(T(scale), linear_, T(1), grad);
    linear = scale * static_cast<double>(backend_.Dot(linear_, theta));
  }
  return loss_sum / static_cast<double>(scale_n) +
         0.5 * l2 * static_cast<double>(backend_.Dot(theta, theta)) + linear;
}

template <typename T>
void Objective<T>::Distribute(distributed::Communicator& comm) {
  comm_ = &comm;
  const std::vector<int64_t> counts = comm.AllgatherInt64(num_examples());
  global_n_ = 0;
  for (int r = 0; r < comm.size(); ++r) {
    if (r == comm.rank()) row_offset_ = global_n_;
    global_n_ += counts[r];
  }
}

template <typename T>
void Objective<T>::ReduceSum(const Matrix& m) {
  if (distributed()) distributed::AllreduceSum<T>(*comm_, backend_, {m}, nullptr);
}

template <typename T>
void Objective<T>::SetLinearTerm(const std::vector<double>& b) {
  if (b.empty()) {
    linear_ = Matrix();
    return;
  }
  LETHE_CHECK(static_cast<int64_t>(b.size()) == num_params());
  linear_ = backend_.Allocate(1, num_params());
  const std::vector<T> host(b.begin(), b.end());
  backend_.Upload(host.data(), linear_);
}

// For each direction v (a row of V), with x_l, δ_l from the batch's forward and backward
// passes and R{·} the directional derivative along v: the forward R pass from the first
// layer with parameters (R{x} = 0 below it), R{δ_L} = (1/n) ∇²_f l · R{f} at the output,
// the backward R pass down again, each layer adding its R{∇w} (its header has the
// formulas). The Gauss-Newton product drops the terms with δ (they differentiate the
// Jacobian). Finally Hv += l2 · v.
template <typename T>
void Objective<T>::CurvatureProduct(Curvature curvature, const Matrix& theta, const Matrix& V,
                                    Matrix out) {
  CurvatureProductRows(curvature, theta, V, out, 0, num_examples());
}

// The loss terms carry the weight 1/n (n = rows in the range), so a minibatch gives the
// curvature of the minibatch objective; the l2 term is added once, outside the loop.
template <typename T>
void Objective<T>::CurvatureProductRows(Curvature curvature, const Matrix& theta, const Matrix& V,
                                        Matrix out, int64_t first, int64_t n) {
  LETHE_CHECK(first >= 0 && n > 0 && first + n <= num_examples());
  // Over all rows, distributed: weight 1/N (N the global n), then one allreduce of out.
  const bool all_ranks = distributed() && first == 0 && n == num_examples();
  CurvatureProductSums(curvature, theta, V, out, first, n, all_ranks ? global_examples() : n,
                       all_ranks, /*allow_cache=*/true);
}

template <typename T>
void Objective<T>::SharedBatchCurvatureProduct(Curvature curvature, const Matrix& theta,
                                               const Matrix& V, Matrix out, int64_t first,
                                               int64_t n, int64_t global_count) {
  if (!distributed()) {
    LETHE_CHECK(n == global_count);
    CurvatureProductRows(curvature, theta, V, out, first, n);
    return;
  }
  LETHE_CHECK(first >= 0 && n >= 0 && first + n <= num_examples() && global_count > 0);
  // Never over the forward cache: it holds the full pass's state, whose Hessian terms are
  // weighted by 1/N, not by this minibatch's 1/global_count.
  CurvatureProductSums(curvature, theta, V, out, first, n, global_count, /*reduce=*/true,
                       /*allow_cache=*/false);
}

template <typename T>
void Objective<T>::CurvatureProductSums(Curvature curvature, const Matrix& theta, const Matrix& V,
                                        Matrix out, int64_t first, int64_t n, int64_t scale_n,
                                        bool reduce, bool allow_cache) {
  LETHE_CHECK(theta.rows() == 1 && theta.cols() == num_params());
  LETHE_CHECK(V.cols() == num_params() && out.rows() == V.rows() && out.cols() == V.cols());
  const bool hessian = curvature == Curvature::kHessian;
  Workspace& ws = *ws_;
  const int L = static_cast<int>(ws.layers.size());
  backend_.Fill(out, T(0));
  // The first layer with parameters sees the data (R{x} = 0), and its two products with
  // them (for a linear layer R{y₁} = x V_Wᵀ and R{∇W} = R{δ₁}ᵀ x) are the widest of the pass
  // but only out columns each (10 for a softmax regression): thin, slow GEMMs. When the
  // layer can, it takes them for a group of directions at once (two wide GEMMs,
  // x [V_W¹; …; V_Wᵍ]ᵀ and [R{δ₁}¹ … R{δ₁}ᵍ]ᵀ x); the rest of the pass runs per direction
  // on its column block.
  layers::Layer<T>& layer0 = *ws.layers[ws.first];
  const int64_t B = ws.losses.rows(), width0 = layer0.GroupWidth();
  const int64_t group =
      width0 > 0 ? options_.DirectionsPerGroup(V.rows(), layer0.GroupElements(B)) : 1;
  if (width0 > 0 && ws.group < group) {
    ws.group_r_out = backend_.Allocate(B, group * width0);
    ws.group_r_delta = backend_.Allocate(B, group * width0);
    layer0.ReserveGroup(backend_, group);
    ws.group = group;
  }
  const bool cached = allow_cache && n > 0 && UseCache(theta, hessian, first, n);
  for (int64_t done = 0, batch = 0; done < n; done += B, ++batch) {
    const int64_t count = std::min(B, n - done);
    const int64_t begin = first + done;
    if (cached && ws.cache.valid) {
      const std::vector<Matrix> state = ws.CachedState(count);
      for (size_t i = 0; i < state.size(); ++i) backend_.Copy(ws.cache.batches[batch][i], state[i]);
      // Streamed, the rows are read only where a layer reads them (the first layer with
      // parameters is the first: below it the cache holds everything).
      ws.acts[0] = data_.streamed() && ws.first > 0 ? Matrix() : InputRows(begin, count);
      ws.count = count;
    } else {
      Forward(theta, begin, count);
      Matrix f = ws.acts[L].Rows(0, count);
      if (hessian) {
        backend_.LossGradient(arch_.spec.loss, T(1.0 / scale_n), f, data_.Y.Rows(begin, count),
                              ws.deltas[L].Rows(0, count));
        Backward(theta, count, {});
      }
      const layers::Pass<T> pass = MakePass(theta);
      for (int l = ws.first; l < L; ++l)
        ws.layers[l]->Linearize(pass, ws.acts[l].Rows(0, count), hessian);
      if (cached) {
        const std::vector<Matrix> state = ws.CachedState(count);
        for (size_t i = 0; i < state.size(); ++i)
          backend_.Copy(state[i], ws.cache.batches[batch][i]);
      }
    }
    const layers::Pass<T> pass = MakePass(theta);
    Matrix x0 = ws.acts[ws.first].Rows(0, count);
    for (int64_t r0 = 0; r0 < V.rows(); r0 += group) {
      const int64_t g = std::min(group, V.rows() - r0);
      if (width0 == 0) {
        for (int64_t j = 0; j < g; ++j)
          DirectionProduct(hessian, theta, V.Row(r0 + j), out.Row(r0 + j), scale_n, count,
                           Matrix(), Matrix());
        continue;
      }
      Matrix r_out = ws.group_r_out.Rows(0, count).Cols(0, g * width0);
      Matrix r_delta = ws.group_r_delta.Rows(0, count).Cols(0, g * width0);
      layer0.GroupedRForward(pass, x0, V.Rows(r0, g), r_out);
      for (int64_t j = 0; j < g; ++j)
        DirectionProduct(hessian, theta, V.Row(r0 + j), out.Row(r0 + j), scale_n, count,
                         r_out.Cols(j * width0, width0), r_delta.Cols(j * width0, width0));
      layer0.GroupedRBackward(pass, x0, r_delta, out.Rows(r0, g));
    }
  }
  if (cached) ws.cache.valid = true;
  if (reduce) distributed::AllreduceSum<T>(*comm_, backend_, {out}, nullptr);
  const double l2 = arch_.spec.l2;
  if (l2 != 0) backend_.Axpby(T(l2), V, T(1), out);
}

// Whether this product runs over the cache (ObjectiveOptions::cache_elements), and
// prepares it: when θ or the curvature differ from the cached ones it is marked invalid,
// to be refilled by this product's passes.
template <typename T>
bool Objective<T>::UseCache(const Matrix& theta, bool hessian, int64_t first, int64_t n) {
  Workspace& ws = *ws_;
  if (first != 0 || n != num_examples()) return false;  // minibatches (LiSSA): never
  const int64_t B = ws.losses.rows();
  if (ws.cache.batches.empty()) {
    // Allocated once, at the first product that fits.
    int64_t per_row = 0;
    for (const Matrix& m : ws.CachedState(1)) per_row += m.cols();
    if (per_row * num_examples() > options_.cache_elements) return false;
    for (int64_t done = 0; done < n; done += B) {
      const int64_t count = std::min(B, n - done);
      std::vector<Matrix> batch;
      for (const Matrix& m : ws.CachedState(count))
        batch.push_back(backend_.Allocate(count, m.cols()));
      ws.cache.batches.push_back(std::move(batch));
    }
    ws.cache.theta = backend_.Allocate(1, num_params());
    ws.cache.valid = false;
  }
  if (ws.cache.valid && ws.cache.hessian == hessian) {
    // Equal element for element (a NaN anywhere: not equal). p values to the host: far
    // less than the pass over the data it saves.
    std::vector<T> now(static_cast<size_t>(num_params())), then(now.size());
    backend_.Download(theta, now.data());
    backend_.Download(ws.cache.theta, then.data());
    if (now == then) return true;
  }
  ws.cache.valid = false;  // this product's passes refill it
  ws.cache.hessian = hessian;
  backend_.Copy(theta, ws.cache.theta);
  return true;
}

// One direction's R passes over the current batch. With r_first (the first layer's R{y},
// taken for a group by the caller), that layer's R{δ} goes to r_delta_first for the
// caller's grouped product; everything else is added into hv.
template <typename T>
void Objective<T>::DirectionProduct(bool hessian, const Matrix& theta, const Matrix& v, Matrix hv,
                                    int64_t n, int64_t count, const Matrix& r_first,
                                    Matrix r_delta_first) {
  Workspace& ws = *ws_;
  const int L = static_cast<int>(ws.layers.size());
  const bool grouped = !r_first.empty();
  const layers::Pass<T> pass = MakePass(theta);
  // R{x} and R{δ} at layer boundary l (its input's). Grouped, the first layer's R{y} and
  // R{δ} are the caller's column blocks, read and written there by the layers and the loss
  // around it (every op takes strided views) rather than copied in and out of r_acts and
  // r_deltas: two batch × width copies per direction saved (~5% of a small CNN's product).
  auto r_act = [&](int l) {
    return grouped && l == ws.first + 1 ? r_first : ws.r_acts[l].Rows(0, count);
  };
  auto r_delta = [&](int l) {
    return grouped && l == ws.first + 1 ? r_delta_first : ws.r_deltas[l].Rows(0, count);
  };
  // Forward R pass. Before the first layer with parameters R{x} = 0 (the data do not
  // depend on θ).
  for (int l = ws.first; l < L; ++l) {
    if (l == ws.first && grouped) continue;  // R{y₁}: taken for the group by the caller
    const Matrix rx = l == ws.first ? Matrix() : r_act(l);
    ws.layers[l]->RForward(pass, ws.acts[l].Rows(0, count), rx, v, r_act(l + 1));
  }
  backend_.LossHessianProduct(arch_.spec.loss, T(1.0 / n), ws.acts[L].Rows(0, count), r_act(L),
                              r_delta(L));
  // Backward R pass.
  for (int l = L - 1; l >= ws.first; --l) {
    if (l == ws.first && grouped) continue;  // R{∇w₁}: grouped by the caller
    const Matrix rx = l == ws.first ? Matrix() : r_act(l);
    Matrix rdelta_in = l > ws.first ? r_delta(l) : Matrix();
    ws.layers[l]->RBackward(pass, hessian, ws.acts[l].Rows(0, count), rx,
                            ws.deltas[l + 1].Rows(0, count), r_delta(l + 1), v, hv, rdelta_in);
  }
}

template <typename T>
void Objective<T>::PerExampleGradients(const Matrix& theta, int64_t begin, int64_t count,
                                       Matrix out) {
  LETHE_CHECK(begin >= 0 && count >= 0 && begin + count <= num_examples());
  LETHE_CHECK(out.rows() == count && out.cols() == num_params());
  const int L = static_cast<int>(arch_.layers.size());
  for (int64_t done = 0; done < count; done += ws_->losses.rows()) {
    const int64_t c = std::min(ws_->losses.rows(), count - done);
    Forward(theta, begin + done, c);
    backend_.LossGradient(arch_.spec.loss, T(1), ws_->acts[L].Rows(0, c),
                          data_.Y.Rows(begin + done, c), ws_->deltas[L].Rows(0, c));
    Matrix rows = out.Rows(done, c);
    Backward(theta, c, {.per_example = &rows});
  }
}

template <typename T>
void Objective<T>::PerExampleGradientDots(const Matrix& theta, const Matrix& S, Matrix out) {
  LETHE_CHECK(out.rows() == num_examples());
  PerExampleGradientDotsRows(theta, S, 0, num_examples(), out);
}

template <typename T>
void Objective<T>::PerExampleGradientDotsRows(const Matrix& theta, const Matrix& S, int64_t first,
                                              int64_t n, Matrix out) {
  LETHE_CHECK(first >= 0 && n >= 0 && first + n <= num_examples());
  LETHE_CHECK(S.cols() == num_params() && out.rows() == n && out.cols() == S.rows());
  const int L = static_cast<int>(arch_.layers.size());
  backend_.Fill(out, T(0));
  for (int64_t done = 0; done < n; done += ws_->losses.rows()) {
    const int64_t count = std::min(ws_->losses.rows(), n - done);
    const int64_t begin = first + done;
    Forward(theta, begin, count);
    backend_.LossGradient(arch_.spec.loss, T(1), ws_->acts[L].Rows(0, count),
                          data_.Y.Rows(begin, count), ws_->deltas[L].Rows(0, count));
    Matrix dots = out.Rows(done, count);
    Backward(theta, count, {.dot_with = &S, .dots = &dots});
  }
}

template <typename T>
int64_t Objective<T>::batch_rows() const {
  return ws_->losses.rows();
}

template <typename T>
std::vector<layers::KroneckerBlock> Objective<T>::KroneckerBlocks() const {
  std::vector<layers::KroneckerBlock> blocks;
  for (const auto& layer : ws_->layers)
    if (layers::KroneckerBlock b = layer->Kronecker(); b.out > 0) blocks.push_back(b);
  return blocks;
}

template <typename T>
void Objective<T>::KroneckerFactors(const Matrix& theta, std::vector<Matrix>* output,
                                    std::vector<Matrix>* input, int64_t max_examples) {
  LETHE_CHECK(theta.rows() == 1 && theta.cols() == num_params());
  LETHE_CHECK(max_examples > 0);
  Workspace& ws = *ws_;
  const int L = static_cast<int>(ws.layers.size());
  const int64_t width = arch_.output_dim;
  // The rows used: all, or `blocks` contiguous blocks of `block` rows spread evenly over
  // the data (sorted data must not bias the estimate toward its first classes).
  // Distributed, the blocks are those of the whole data (global rows, the batch size of
  // the options rather than this rank's), and each rank takes their part in its own rows:
  // the same rows as one process would.
  const int64_t all = global_examples();
  const int64_t batch = distributed() ? std::min(options_.batch_size, all) : ws.losses.rows();
  const int64_t block =
      std::min(batch,
               std::min(all, max_examples) <= 256 ? std::min(all, max_examples) : int64_t{256});
  int64_t blocks = all <= max_examples ? 0 : (max_examples + block - 1) / block;
  if (blocks * block >= all) blocks = 0;  // then the blocks would overlap: take every row
  auto block_begin = [&](int64_t b) { return b * all / blocks; };
  const int64_t n = blocks == 0 ? all : blocks * block;
  // The local ranges [begin, begin + count) the passes take.
  std::vector<std::pair<int64_t, int64_t>> ranges;
  if (blocks == 0) {
    for (int64_t b = 0; b < num_examples(); b += ws.losses.rows())
      ranges.emplace_back(b, std::min(ws.losses.rows(), num_examples() - b));
  } else {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = std::max(block_begin(b), row_offset_);
      const int64_t hi = std::min(block_begin(b) + block, row_offset_ + num_examples());
      if (lo < hi) ranges.emplace_back(lo - row_offset_, hi - lo);
    }
  }
  output->clear(), input->clear();
  std::vector<int> factor(L, -1);  // layer → index of its factors, -1: none
  for (int l = 0; l < L; ++l) {
    const layers::KroneckerBlock kb = ws.layers[l]->Kronecker();
    if (kb.out == 0) continue;
    LETHE_CHECK(l >= ws.first);
    factor[l] = static_cast<int>(output->size());
    output->push_back(backend_.Allocate(kb.out, kb.out));
    input->push_back(backend_.Allocate(kb.k(), kb.k()));
    backend_.Fill(output->back(), T(0));
    backend_.Fill(input->back(), T(0));
  }
  Matrix ones = backend_.Allocate(ws.losses.rows(), 1);
  backend_.Fill(ones, T(1));
  for (const auto& [begin, count] : ranges) {
    Forward(theta, begin, count);
    const layers::Pass<T> pass = MakePass(theta);
    Matrix one = ones.Rows(0, count);
    for (int l = ws.first; l < L; ++l)
      if (factor[l] >= 0)
        ws.layers[l]->AddInputFactor(pass, ws.acts[l].Rows(0, count), one, (*input)[factor[l]]);
    for (int l = ws.first; l < L; ++l)
      ws.layers[l]->Linearize(pass, ws.acts[l].Rows(0, count), false);
    // Γ_l += Σ_c (Jᵀ e_c)ᵀ-rows times (Jᵀ A e_c)-rows: e_c backpropagates in `deltas`,
    // A e_c in `r_deltas`, through the same maps J_xᵀ of every layer.
    Matrix f = ws.acts[L].Rows(0, count);
    for (int64_t c = 0; c < width; ++c) {
      Matrix e = ws.deltas[L].Rows(0, count);
      backend_.Fill(e, T(0));
      backend_.Fill(e.Cols(c, 1), T(1));
      backend_.LossHessianProduct(arch_.spec.loss, T(1), f, e, ws.r_deltas[L].Rows(0, count));
      for (int l = L - 1; l >= ws.first; --l) {
        Matrix be = ws.deltas[l + 1].Rows(0, count), bae = ws.r_deltas[l + 1].Rows(0, count);
        if (factor[l] >= 0) ws.layers[l]->AddOutputFactor(pass, be, bae, (*output)[factor[l]]);
        if (l == ws.first) continue;
        ws.layers[l]->BackwardInput(pass, be, ws.deltas[l].Rows(0, count));
        ws.layers[l]->BackwardInput(pass, bae, ws.r_deltas[l].Rows(0, count));
      }
    }
  }
  if (distributed()) {  // every factor of every layer in one allreduce
    std::vector<Matrix> all_factors(output->begin(), output->end());
    all_factors.insert(all_factors.end(), input->begin(), input->end());
    distributed::AllreduceSum(*comm_, backend_, all_factors, nullptr);
  }
  const T inv_n = T(1.0 / static_cast<double>(n));
  for (size_t j = 0; j < output->size(); ++j) {
    for (Matrix* m : {&(*output)[j], &(*input)[j]}) {
      backend_.Symmetrize(*m);
      backend_.Axpby(T(0), *m, inv_n, *m);
    }
  }
}

template <typename T>
void Objective<T>::PerExampleLosses(const Matrix& theta, Matrix out) {
  LETHE_CHECK(out.rows() == num_examples() && out.cols() == 1);
  const int L = static_cast<int>(arch_.layers.size());
  for (int64_t begin = 0; begin < num_examples(); begin += ws_->losses.rows()) {
    const int64_t count = std::min(ws_->losses.rows(), num_examples() - begin);
    Forward(theta, begin, count);
    backend_.LossValues(arch_.spec.loss, ws_->acts[L].Rows(0, count), data_.Y.Rows(begin, count),
                        out.Rows(begin, count));
  }
}

template <typename T>
void Objective<T>::Outputs(const Matrix& theta, Matrix out) {
  LETHE_CHECK(out.rows() == num_examples() && out.cols() == arch_.output_dim);
  const int L = static_cast<int>(arch_.layers.size());
  for (int64_t begin = 0; begin < num_examples(); begin += ws_->losses.rows()) {
    const int64_t count = std::min(ws_->losses.rows(), num_examples() - begin);
    Forward(theta, begin, count);
    backend_.Copy(ws_->acts[L].Rows(0, count), out.Rows(begin, count));
  }
}

template <typename T>
Metrics Objective<T>::Evaluate(const Matrix& theta) {
  // One forward pass per batch serves both the loss and the accuracy; the sums are taken as
  // in BatchValueAndGradient, so `objective` equals ValueAndGradient's value bit for bit.
  Metrics m;
  m.n = num_examples();
  const int L = static_cast<int>(arch_.layers.size());
  double loss_sum = 0, correct = 0;
  for (int64_t begin = 0; begin < m.n; begin += ws_->losses.rows()) {
    const int64_t count = std::min(ws_->losses.rows(), m.n - begin);
    Forward(theta, begin, count);
    Matrix f = ws_->acts[L].Rows(0, count), y = data_.Y.Rows(begin, count);
    Matrix scratch = ws_->losses.Rows(0, count);
    backend_.LossValues(arch_.spec.loss, f, y, scratch);
    loss_sum += static_cast<double>(backend_.Sum(scratch));
    backend_.Correct(arch_.spec.loss, f, y, scratch);
    correct += static_cast<double>(backend_.Sum(scratch));
  }
  if (distributed()) {
    std::vector<double> sums{loss_sum, correct};
    distributed::AllreduceSum<T>(*comm_, backend_, {}, &sums);
    loss_sum = sums[0], correct = sums[1];
    m.n = global_examples();
  }
  m.loss = loss_sum / static_cast<double>(m.n);
  m.objective = m.loss + 0.5 * l2() * static_cast<double>(backend_.Dot(theta, theta));
  if (!linear_.empty())
    m.objective += static_cast<double>(backend_.Dot(linear_, theta)) / static_cast<double>(m.n);
  m.accuracy = m.n ? correct / static_cast<double>(m.n) : 0;
  return m;
}

template <typename T>
DeviceData<T> UploadData(kernels::Backend<T>& backend, const io::Dataset& data,
                         const std::vector<int64_t>& rows) {
  if (data.streamed) return UploadStreamed(backend, data, rows);  // larger than memory
  const bool all = rows.empty();
  const int64_t n = all ? data.n : static_cast<int64_t>(rows.size());
  DeviceData<T> out;
  out.X = backend.Allocate(n, data.d);
  out.Y = backend.Allocate(n, data.target_width);
  // Through a small host buffer, a block of rows at a time: the data are converted and
  // gathered once, without a second full-size host copy (which, first touched page by
  // page, cost as much as the copy itself).
  const int64_t width = std::max<int64_t>(1, std::max(data.d, data.target_width));
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 16) / width);
  std::vector<T> buffer(static_cast<size_t>(std::min(n, block) * width));
  auto upload = [&](const double* src, int64_t cols, kernels::Matrix<T> dst) {
    for (int64_t b = 0; b < n; b += block) {
      const int64_t count = std::min(block, n - b);
      for (int64_t i = 0; i < count; ++i) {
        const double* from = src + (all ? b + i : rows[b + i]) * cols;
        std::copy(from, from + cols, buffer.begin() + i * cols);
      }
      backend.Upload(buffer.data(), dst.Rows(b, count));
    }
  };
  upload(data.X.data(), data.d, out.X);
  upload(data.y.data(), data.target_width, out.Y);
  return out;
}

template class Objective<float>;
template class Objective<double>;
template DeviceData<float> UploadData<float>(kernels::Backend<float>&, const io::Dataset&,
                                             const std::vector<int64_t>&);
template DeviceData<double> UploadData<double>(kernels::Backend<double>&, const io::Dataset&,
                                               const std::vector<int64_t>&);

}  // namespace lethe
