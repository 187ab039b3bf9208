// The training objective of a sequential model and its derivatives, computed in batches
// through the kernels/ backend:
//
//   L(θ) = (1/n) Σᵢ l(f(xᵢ; θ), yᵢ) + (l2/2)‖θ‖²
//
// - ValueAndGradient: L and ∇L by reverse mode (backpropagation).
// - CurvatureProduct: Hv for the exact Hessian H = ∇²L, by forward-over-reverse
//   (Pearlmutter's R-operator: R{·} = d/dr (·)(θ + r v) at r = 0, pushed forward
//   through the network and then back through the backward pass), or Gv for the
//   Gauss-Newton matrix G = (1/n) Σ Jᵢᵀ ∇²_f lᵢ Jᵢ + l2·I (the same pass without the
//   terms that differentiate the Jacobian: no σ'' and no δ·R{x}).
// - PerExampleGradients: ∇_θ lᵢ for a block of examples at once (no 1/n, no l2), with
//   one forward and one backward pass: for a linear layer ∇_W lᵢ = δᵢ xᵢᵀ, an outer
//   product per row (Backend::RowOuter).
//
// Several vectors are the rows of a matrix; CurvatureProduct makes one pass over the
// data for all of them, reusing each batch's forward and backward pass.
//
// The objective is a driver over the model's list of layers (engine/layers/: one module
// per layer type, each with its own algebra and maths); it owns the buffers at the layer
// boundaries, the batching, the loss, the forward-pass cache and the grouping of
// directions, and never looks at a layer's type.
#pragma once

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "engine/architecture.h"
#include "engine/distributed/communicator.h"
#include "engine/layers/layer.h"
#include "engine/row_source.h"
#include "io/dataset.h"
#include "kernels/backend.h"

namespace lethe {

enum class Curvature { kHessian, kGaussNewton };

// Training data on the compute device. Y holds labels (as T) or regression targets.
// X is either held (n × d) or, for data larger than memory, read a batch at a time from
// `source` (engine/row_source.h; X is then empty): the objective computes the same bits
// either way. Y is always held (n × target width: O(n), not O(n·d)).
template <typename T>
struct DeviceData {
  kernels::Matrix<T> X;  // n × d, or empty when streamed
  kernels::Matrix<T> Y;  // n × target width
  std::shared_ptr<RowSource<T>> source;  // null: X is held
  int64_t n() const { return Y.rows(); }
  int64_t d() const { return source ? source->cols() : X.cols(); }
  bool streamed() const { return source != nullptr; }
};

struct ObjectiveOptions {
  // Examples per forward/backward pass: bounds the workspace to O(batch × max width).
  int64_t batch_size = 2048;
  // Curvature products take the first linear layer's products for a group of directions
  // at once (two wide GEMMs instead of 2 × group thin ones), and so does the K-FAC
  // preconditioner with its input-side products; a group is as large as keeps each of its
  // buffers (e.g. batch × group·out) within this many elements.
  int64_t group_elements = int64_t{1} << 22;
  // How many of `directions` go in one group when each takes `elements_per_direction` of a
  // buffer: at least 1, at most all.
  int64_t DirectionsPerGroup(int64_t directions, int64_t elements_per_direction) const {
    return std::max<int64_t>(1, std::min(directions, group_elements / elements_per_direction));
  }
  // Curvature products over all rows keep what their passes compute from θ alone (the
  // forward pass, σ', σ'', the backpropagated loss gradient), for the next product at the
  // same θ, when it takes at most this many elements (batch widths × n); else they
  // recompute it. 2²⁵ elements: 256 MB in f64.
  int64_t cache_elements = int64_t{1} << 25;
  void Validate() const;
};

struct Metrics {
  int64_t n = 0;
  double loss = 0;       // (1/n) Σ lᵢ
  double objective = 0;  // loss + (l2/2)‖θ‖²
  double accuracy = 0;   // fraction right (classification losses only)
};

template <typename T>
class Objective {
 public:
  using Matrix = kernels::Matrix<T>;

  Objective(kernels::Backend<T>& backend, const Architecture& arch, DeviceData<T> data,
            const ObjectiveOptions& options = {});
  ~Objective();

  kernels::Backend<T>& backend() const { return backend_; }
  const Architecture& arch() const { return arch_; }
  const DeviceData<T>& data() const { return data_; }
  int64_t num_params() const { return arch_.num_params; }
  // This process's rows (all of them serially; under MPI its block: docs/distributed.md).
  // Row indices (begin, count, out's rows) are always into these.
  int64_t num_examples() const { return data_.n(); }
  // Distributed over the ranks of `comm` (a collective call, made by every rank with its
  // own block of rows, in rank order): from then on every sum over all rows (the value,
  // gradient, curvature products, K-FAC factors, Evaluate) is the sum over every rank's
  // rows, through one Communicator::AllreduceSum each, and 1/n means 1/global_examples().
  // Calls over a sub-range of rows (minibatches) stay local. Per-row results
  // (PerExampleGradients, …) are of this rank's rows.
  void Distribute(distributed::Communicator& comm);
  bool distributed() const { return comm_ != nullptr && comm_->size() > 1; }
  // n of the objective: the rows of every rank together (num_examples() serially).
  int64_t global_examples() const { return global_n_ >= 0 ? global_n_ : data_.n(); }
  // Global index of this rank's first row.
  int64_t row_offset() const { return row_offset_; }
  // m := the sum of m over the ranks (nothing serially): for sums over rows taken outside
  // the objective (the direct solver's dense curvature).
  void ReduceSum(const Matrix& m);
  double l2() const { return arch_.spec.l2; }
  const ObjectiveOptions& options() const { return options_; }

  // θ is 1 × p. Returns L(θ); writes ∇L(θ) (1 × p) when grad is non-empty.
  double ValueAndGradient(const Matrix& theta, Matrix grad);
  // The same objective over rows [begin, begin+count) alone, (1/count) Σ lᵢ + (l2/2)‖θ‖²:
  // a minibatch for stochastic optimisers.
  double BatchValueAndGradient(const Matrix& theta, int64_t begin, int64_t count, Matrix grad);
  // Distributed minibatches (a collective call): rows [begin, begin+count) of this rank
  // (count may be 0) are its share of a minibatch of global_count rows over all ranks; the
  // minibatch objective (1/global_count) Σ lᵢ + (l2/2)‖θ‖² over every rank's share, through
  // one allreduce of p + 1 values. Not distributed: BatchValueAndGradient (count must be
  // global_count).
  double SharedBatchValueAndGradient(const Matrix& theta, int64_t begin, int64_t count,
                                     int64_t global_count, Matrix grad);
  distributed::Communicator* communicator() const { return comm_; }
  // out (m × p), row r = C v_r for the rows v_r of V (m × p), C = H or G.
  void CurvatureProduct(Curvature curvature, const Matrix& theta, const Matrix& V, Matrix out);
  // The same for the objective over rows [begin, begin+count) alone,
  // (1/count) Σ lᵢ + (l2/2)‖θ‖²: the minibatch curvature stochastic solvers (LiSSA) use.
  void CurvatureProductRows(Curvature curvature, const Matrix& theta, const Matrix& V, Matrix out,
                            int64_t begin, int64_t count);
  // Distributed minibatches (a collective call), as SharedBatchValueAndGradient: rows
  // [begin, begin+count) of this rank (count may be 0) are its share of a minibatch of
  // global_count rows over all ranks; out = the minibatch objective's curvature product,
  // (1/global_count) Σ over every rank's share + l2·V, through one allreduce of out (LiSSA's
  // minibatches under mpirun). Not distributed: CurvatureProductRows.
  void SharedBatchCurvatureProduct(Curvature curvature, const Matrix& theta, const Matrix& V,
                                   Matrix out, int64_t begin, int64_t count, int64_t global_count);
  // out (count × p): row i = ∇_θ l(f(x_{begin+i}), y_{begin+i}).
  void PerExampleGradients(const Matrix& theta, int64_t begin, int64_t count, Matrix out);
  // out (n × m): out[i, j] = ∇_θ lᵢ(θ)ᵀ s_j for the rows s_j of S (m × p), without forming
  // any per-example gradient: for a linear layer ∇_W lᵢ = δᵢ xᵢᵀ, so
  // ⟨S_W, δᵢ xᵢᵀ⟩ = δᵢᵀ S_W xᵢ = rowᵢ(δ ⊙ (x S_Wᵀ)) and ⟨s_b, δᵢ⟩ = rowᵢ(δ s_bᵀ): memory stays
  // O(batch × width), never O(n × p). This is how influence scores g_testᵀ H⁻¹ gᵢ are taken.
  void PerExampleGradientDots(const Matrix& theta, const Matrix& S, Matrix out);
  // The same for rows [begin, begin+count) alone (out: count × m), in batches from begin:
  // with begin a multiple of the batch size, the batches and so the bits are the full
  // call's (influence over data larger than memory takes the scores a block at a time).
  void PerExampleGradientDotsRows(const Matrix& theta, const Matrix& S, int64_t begin,
                                  int64_t count, Matrix out);
  // Rows per forward/backward pass.
  int64_t batch_rows() const;
  // The Kronecker factors of the Gauss-Newton matrix's diagonal blocks (K-FAC, Martens &
  // Grosse 2015), one pair per linear layer in layer order. For layer l with input a (the
  // bias as a constant 1 appended, ã = [a; 1]) and J the Jacobian of the model output
  // f with respect to the layer's output, its block of G = (1/n) Σᵢ Jᵢᵀ Aᵢ Jᵢ (Aᵢ = ∇²_f lᵢ) is
  //   G_ll = (1/n) Σᵢ (J_{l,i}ᵀ Aᵢ J_{l,i}) ⊗ ãᵢ ãᵢᵀ ≈ Γ_l ⊗ S_l,
  //   Γ_l = (1/n) Σᵢ J_{l,i}ᵀ Aᵢ J_{l,i}  (out × out),  S_l = (1/n) Σᵢ ãᵢ ãᵢᵀ  (k × k),
  // k = in + 1 with a bias, else in; exact when n = 1. Γ is taken without square roots of
  // A: Σ_c (Jᵀ e_c)(Jᵀ A e_c)ᵀ = Jᵀ A J, so the unit vectors e_c and A e_c are
  // backpropagated side by side (2 × output-width backward passes, once). l2 is not in
  // them. `output` and `input` receive newly allocated, symmetrised Γ_l and S_l. Beyond
  // max_examples rows the averages are taken over about that many, in contiguous blocks
  // of ≤ 256 spread evenly over the data: a preconditioner needs the factors' shape, not
  // their last digit, and S costs k² multiply-adds per row.
  void KroneckerFactors(const Matrix& theta, std::vector<Matrix>* output,
                        std::vector<Matrix>* input,
                        int64_t max_examples = std::numeric_limits<int64_t>::max());
  // Where the parameters of each pair of KroneckerFactors sit in θ, in the same order.
  std::vector<layers::KroneckerBlock> KroneckerBlocks() const;
  // out (n × 1): lᵢ(θ).
  void PerExampleLosses(const Matrix& theta, Matrix out);
  // out (n × output width): f(xᵢ; θ).
  void Outputs(const Matrix& theta, Matrix out);
  Metrics Evaluate(const Matrix& theta);
  // Certified training and removal (engine/certified/removal_bound.h): the objective gains
  // the linear term bᵀθ/N, N = num_examples(), i.e. b is fixed in the sum form
  // Σ lᵢ + (N·l2/2)‖θ‖² + bᵀθ, so an objective over fewer examples carries the same b. Its
  // gradient gains b/N (also in BatchValueAndGradient, whose minibatch objective stays an
  // unbiased estimate of the full one); curvature is unchanged. An empty b removes it.
  void SetLinearTerm(const std::vector<double>& b);
  bool has_linear_term() const { return !linear_.empty(); }

 private:
  struct Workspace;
  // Σ over rows [first, first+n) of lᵢ and of ∇lᵢ/scale_n, reduced over the ranks when
  // `reduce`; returns the value (1/scale_n)·Σ lᵢ + l2 and linear terms, grad the gradient.
  double ValueAndGradientSums(const Matrix& theta, int64_t first, int64_t n, int64_t scale_n,
                              bool reduce, Matrix grad);
  // Σ over rows [first, first+n) (n may be 0) of the curvature products weighted 1/scale_n,
  // reduced over the ranks when `reduce`, + l2·V; over the forward cache when allowed.
  void CurvatureProductSums(Curvature curvature, const Matrix& theta, const Matrix& V, Matrix out,
                            int64_t first, int64_t n, int64_t scale_n, bool reduce,
                            bool allow_cache);
  // Rows [begin, begin+count) of X: a view of the held X, or read from the source into
  // the workspace's batch buffer.
  Matrix InputRows(int64_t begin, int64_t count);
  // Forward pass of rows [begin, begin+count): fills acts[0..L] (acts[0] views X).
  void Forward(const Matrix& theta, int64_t begin, int64_t count);
  using Sinks = layers::GradientSinks<T>;
  // A pass of the current batch (ws_->count rows) at θ, for the layers.
  layers::Pass<T> MakePass(const Matrix& theta) const;
  // CurvatureProductRows' passes for one direction v (into hv) on the current batch. When the
  // first layer with parameters takes its products for a group of directions (r_first not
  // empty), r_first is its R{y} for v and its R{δ} is left in r_delta_first for the caller.
  void DirectionProduct(bool hessian, const Matrix& theta, const Matrix& v, Matrix hv, int64_t n,
                        int64_t count, const Matrix& r_first, Matrix r_delta_first);
  // Backward pass from deltas[L], down to the first layer with parameters.
  void Backward(const Matrix& theta, int64_t count, const Sinks& sinks);
  // Whether a curvature product over rows [first, first+n) runs over the forward cache
  // (ObjectiveOptions::cache_elements); invalidates it when θ or the curvature changed.
  bool UseCache(const Matrix& theta, bool hessian, int64_t first, int64_t n);

  kernels::Backend<T>& backend_;
  Architecture arch_;
  DeviceData<T> data_;
  ObjectiveOptions options_;
  std::unique_ptr<Workspace> ws_;
  Matrix linear_;  // 1 × p, b (SetLinearTerm), or empty
  distributed::Communicator* comm_ = nullptr;  // Distribute; null: one process
  int64_t global_n_ = -1, row_offset_ = 0;
};

// Uploads `rows` of the dataset (all rows when empty) as T. A streamed dataset
// (io::Dataset::streamed) gives a streamed DeviceData: Y uploaded, X read by batches.
template <typename T>
DeviceData<T> UploadData(kernels::Backend<T>& backend, const io::Dataset& data,
                         const std::vector<int64_t>& rows = {});

}  // namespace lethe
