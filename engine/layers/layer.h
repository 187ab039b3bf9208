// One layer of a sequential model: everything the objective (engine/objective.h) asks of a
// layer, behind one interface, so the objective is a driver over a list of layers and a
// new layer type is one new file (engine/layers/<type>.{h,cc}) plus its tests
// (tests/engine/layers/). The maths of each layer type (forward, backward, R-operator) is
// in its own header; docs/design.md ("Layers") says why the interface looks as it does.
//
// Notation (every pass works on a batch of `count` examples, one per row):
//   x (count × in)   the layer's input, y = f(x; w) (count × out) its output,
//   w                the layer's own parameters, a slice of θ (possibly empty),
//   δ = ∂ℓ/∂y        the backpropagated gradient of the (scaled) loss ℓ at the output,
//   J_x = ∂y/∂x, J_w = ∂y/∂w (per example), so backward is δ_in = J_xᵀ δ, ∇w = Σᵢ J_wᵀ δᵢ,
//   R{·} = d/dr (·)(θ + r v)|_{r=0}, the directional derivative along a direction v
//   (Pearlmutter 1994): R{y} = J_x R{x} + J_w v_w,
//   R{δ_in} = J_xᵀ R{δ} + [∂(J_xᵀ δ)/∂x] R{x} + [∂(J_xᵀ δ)/∂w] v_w,
//   R{∇w} = Σᵢ J_wᵀ R{δ} + [∂(J_wᵀ δ)/∂x] R{x} + [∂(J_wᵀ δ)/∂w] v_w.
// The Gauss-Newton product keeps only the first term of each (the others differentiate
// the Jacobian and vanish with δ): the `hessian` flag says whether to add them.
//
// Matrices are kernels::Matrix views of backend memory; a layer computes only through its
// kernels::Backend (so it runs on every device). An empty view means "not wanted" (an
// output) or "zero" (an input: R{x} = 0 below the first layer with parameters).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/architecture.h"
#include "kernels/backend.h"

namespace lethe::layers {

// A layer's block for the K-FAC preconditioner: its parameters viewed as an out × k matrix
// V = [W | b], W (out × in, row-major) at weight_offset in θ, b (out) at bias_offset or
// -1 (then k = in, else k = in + 1). The block of the Gauss-Newton matrix is ≈ Γ ⊗ S with
// Γ out × out and S k × k (Objective::KroneckerFactors).
struct KroneckerBlock {
  int64_t out = 0, in = 0;
  int64_t weight_offset = -1, bias_offset = -1;
  int64_t k() const { return in + (bias_offset >= 0 ? 1 : 0); }
};

// What one batch's pass gives a layer.
template <typename T>
struct Pass {
  kernels::Backend<T>& backend;
  const kernels::Matrix<T>& theta;      // 1 × p: all parameters (a layer reads its own slice)
  const kernels::Matrix<T>& constants;  // 1 × q: the fixed tensors (Architecture::constants)
  int64_t count = 0;                // rows in this batch
  kernels::Matrix<T> scratch;       // count × (≥ the layer's ScratchWidth()), shared
};

// Where a backward pass puts the parameters' gradient; any may be null.
template <typename T>
struct GradientSinks {
  kernels::Matrix<T>* grad = nullptr;            // 1 × p: += Σ over the batch of ∇w
  kernels::Matrix<T>* per_example = nullptr;     // count × p: row i, own columns = ∇w lᵢ
  const kernels::Matrix<T>* dot_with = nullptr;  // m × p: directions s_j ...
  kernels::Matrix<T>* dots = nullptr;            // count × m: += ⟨∇w lᵢ, s_j,w⟩
};

template <typename T>
class Layer {
 public:
  using Matrix = kernels::Matrix<T>;

  virtual ~Layer() = default;

  // --- shape and parameters ------------------------------------------------------------
  // The shape record from the architecture (engine/layers/plan.h made it): the shapes the
  // layer takes and gives per example, and its tensors with their places in θ (trainable)
  // or in the constants (fixed).
  const LayerShape& shape() const { return shape_; }
  int64_t in_width() const { return shape_.in_width(); }
  int64_t out_width() const { return shape_.out_width(); }
  const char* type_name() const { return shape_.type().c_str(); }
  const std::vector<TensorInfo>& Tensors() const { return shape_.tensors; }
  int64_t num_params() const { return shape_.num_params(); }  // trainable elements
  bool has_params() const { return num_params() > 0; }

  // --- buffers ---------------------------------------------------------------------------
  // Allocates what the layer keeps per example between passes, for batches of up to `rows`.
  virtual void Allocate(kernels::Backend<T>& /*backend*/, int64_t /*rows*/) {}
  // Columns of Pass::scratch the layer's passes may use.
  virtual int64_t ScratchWidth() const { return 0; }
  // The first `count` rows of what Linearize computed (views of the layer's own buffers),
  // in a fixed order: the objective's forward-pass cache saves and restores them.
  virtual std::vector<Matrix> LinearizationState(int64_t /*count*/) const { return {}; }

  // --- first order -------------------------------------------------------------------------
  // y = f(x; w).
  virtual void Forward(const Pass<T>& pass, const Matrix& x, Matrix y) = 0;
  // From δ (count × out): adds ∇w into `sinks`, and δ_in = J_xᵀ δ when delta_in is not
  // empty (the objective leaves it empty below the first layer with parameters).
  virtual void Backward(const Pass<T>& pass, const Matrix& x, const Matrix& delta, Matrix delta_in,
                        const GradientSinks<T>& sinks) = 0;

  // --- curvature -----------------------------------------------------------------------
  // Computes (into the layer's buffers) what the R passes below need of x and w alone, for
  // the current batch: first derivatives, and second ones when `second_order`.
  virtual void Linearize(const Pass<T>& /*pass*/, const Matrix& /*x*/, bool /*second_order*/) {}
  // δ_in = J_xᵀ δ at the linearised point (after Linearize): K-FAC backpropagates unit
  // vectors through it.
  virtual void BackwardInput(const Pass<T>& pass, const Matrix& delta, Matrix delta_in) = 0;
  // R{y} = J_x R{x} + J_w v_w (rx empty: R{x} = 0). v is 1 × p.
  virtual void RForward(const Pass<T>& pass, const Matrix& x, const Matrix& rx, const Matrix& v,
                        Matrix ry) = 0;
  // Adds R{∇w} into hv (1 × p) and writes R{δ_in} into rdelta_in (when not empty); with
  // `hessian` the terms in δ as well (see the top of this file).
  virtual void RBackward(const Pass<T>& pass, bool hessian, const Matrix& x, const Matrix& rx,
                         const Matrix& delta, const Matrix& rdelta, const Matrix& v, Matrix hv,
                         Matrix rdelta_in) = 0;

  // --- many directions at once (the first layer with parameters) -------------------------
  // The first layer with parameters sees the data (R{x} = 0), and its two products with
  // them, R{y} = J_w v_w and R{∇w} = Σᵢ J_wᵀ R{δ}, are the widest of an R pass. A layer
  // that can take them for a group of directions at once (one wide GEMM each instead of g
  // thin ones) says how many columns of R{y} per direction (0: it cannot; the objective
  // then calls RForward and RBackward per direction).
  virtual int64_t GroupWidth() const { return 0; }
  // Buffer elements one direction of a group takes (for ObjectiveOptions::group_elements).
  virtual int64_t GroupElements(int64_t /*rows*/) const { return 0; }
  // Makes room for groups of `directions` (called before the grouped passes).
  virtual void ReserveGroup(kernels::Backend<T>& /*backend*/, int64_t /*directions*/) {}
  // r_out (count × g·GroupWidth()), block j = R{y} = J_w v_j for the rows v_j of V (g × p).
  virtual void GroupedRForward(const Pass<T>& /*pass*/, const Matrix& /*x*/, const Matrix& /*V*/,
                               Matrix /*r_out*/) {}
  // Adds R{∇w} = Σᵢ J_wᵀ R{δ}_j into out row j, for R{δ}_j block j of r_delta.
  virtual void GroupedRBackward(const Pass<T>& /*pass*/, const Matrix& /*x*/,
                                const Matrix& /*r_delta*/, Matrix /*out*/) {}

  // --- per-example products --------------------------------------------------------------
  // (In Backward's sinks: per-example gradients, and their dot products with m directions,
  // which a layer computes without forming count × p.)

  // --- K-FAC ---------------------------------------------------------------------------------
  // The layer's Kronecker block, when it has one (block.out == 0: none; the preconditioner
  // then leaves its parameters to the damping alone).
  virtual KroneckerBlock Kronecker() const { return {}; }
  // S += Σᵢ ãᵢ ãᵢᵀ (k × k) for the batch; `ones` is count × 1 of ones.
  virtual void AddInputFactor(const Pass<T>& /*pass*/, const Matrix& /*x*/, const Matrix& /*ones*/,
                              Matrix /*S*/) {}
  // Γ += Σᵢ (Jᵀ e)ᵢ (Jᵀ A e)ᵢᵀ (out × out) from the backpropagated unit vector (delta) and
  // its loss-Hessian product (a_delta), both count × out.
  virtual void AddOutputFactor(const Pass<T>& /*pass*/, const Matrix& /*delta*/,
                               const Matrix& /*a_delta*/, Matrix /*gamma*/) {}

 protected:
  explicit Layer(const LayerShape& shape) : shape_(shape) {}
  // Tensor i's values at the current point, rows × cols (its shape, as a matrix): from θ
  // when trainable, else from the constants.
  Matrix Value(const Pass<T>& pass, size_t i, int64_t rows, int64_t cols) const {
    const TensorInfo& t = shape_.tensors[i];
    return (t.trainable ? pass.theta : pass.constants).Block(t.offset, rows, cols);
  }
  // Trainable tensor i's block of a 1 × p row (a direction, a gradient); empty when the
  // tensor is fixed (its derivative is not wanted: it is not part of θ).
  Matrix Slice(const Matrix& row, size_t i, int64_t rows, int64_t cols) const {
    const TensorInfo& t = shape_.tensors[i];
    return t.trainable ? row.Block(t.offset, rows, cols) : Matrix();
  }
  const LayerShape shape_;
};

// The layer for one entry of the architecture (engine/layers/registry.cc finds its type).
template <typename T>
std::unique_ptr<Layer<T>> MakeLayer(const LayerShape& shape);

}  // namespace lethe::layers
