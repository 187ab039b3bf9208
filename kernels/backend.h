// The compute seam: every batch operation the engine performs, as one small interface
// (in the spirit of ggml's backend and faiss's Index). kernels/cpu implements it with
// Eigen; kernels/cuda with cuBLAS and CUDA kernels. engine/ is written once against it,
// so every derivative, solver and unlearning step runs unchanged on either device.
//
// Conventions: matrices are row-major, one example per row. A "vector" is a 1 × p
// matrix (several vectors are the rows of an m × p matrix). Output arguments are views
// passed by value (the storage is shared), and are never aliased with inputs unless the
// method says so. Shapes are checked by the engine; backends LETHE_CHECK them again.
#pragma once

#include <memory>
#include <string>

#include "common/ops.h"
#include "kernels/matrix.h"

namespace lethe::kernels {

enum class Op { kNone, kTranspose };

// The geometry of a 2-D window operation (convolution, pooling) over one example's tensor
// [C, H, W], which a batch holds row-major as one row of C·H·W values, exactly as PyTorch's
// Conv2d / MaxPool2d / AvgPool2d see it (zero padding, groups 1). The output is
// [·, out_h(), out_w()] with out = ⌊(in + 2·pad − dilation·(kernel − 1) − 1) / stride⌋ + 1.
struct WindowGeometry {
  int64_t channels = 1, height = 1, width = 1;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h() const { return (height + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (width + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
  int64_t in_size() const { return channels * height * width; }   // one example's input
  int64_t positions() const { return out_h() * out_w(); }         // output positions per channel
  int64_t patch_size() const { return channels * kernel_h * kernel_w; }  // one im2col row
};

template <typename T>
class Backend;
// The convolution products composed from the window operations and Gemm (kernels/conv_ops.cc):
// Backend's default for them, and the reference the fused versions are tested against.
template <typename T>
void ComposedConvForward(Backend<T>& be, const WindowGeometry& g, const Matrix<T>& X,
                         const Matrix<T>& W, const Matrix<T>& b, T beta, Matrix<T> Y,
                         Matrix<T> cols, Matrix<T> z);
template <typename T>
void ComposedConvWeightGradient(Backend<T>& be, const WindowGeometry& g, const Matrix<T>& X,
                                const Matrix<T>& D, T beta, Matrix<T> dW, Matrix<T> db,
                                Matrix<T> cols, Matrix<T> z);
template <typename T>
void ComposedConvInputGradient(Backend<T>& be, const WindowGeometry& g, const Matrix<T>& D,
                               const Matrix<T>& W, T beta, Matrix<T> dX, Matrix<T> cols,
                               Matrix<T> z);

template <typename T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind device() const = 0;
  virtual std::string Describe() const = 0;  // e.g. "cpu (Eigen 3.4, 2 threads)"

  // --- memory ---------------------------------------------------------------------------
  virtual Matrix<T> Allocate(int64_t rows, int64_t cols) = 0;  // uninitialised, contiguous
  Matrix<T> Zeros(int64_t rows, int64_t cols) {
    Matrix<T> m = Allocate(rows, cols);
    Fill(m, T(0));
    return m;
  }
  // `host` holds rows × cols values, row-major.
  virtual void Upload(const T* host, Matrix<T> dst) = 0;
  virtual void Download(const Matrix<T>& src, T* host) = 0;
  virtual void Copy(const Matrix<T>& src, Matrix<T> dst) = 0;
  virtual void Fill(Matrix<T> dst, T value) = 0;
  // dst row i = src row rows[i]; `rows` lives on the host.
  virtual void GatherRows(const Matrix<T>& src, const int64_t* rows, Matrix<T> dst) = 0;
  // Takes rows[0..count) (strictly increasing, on the host) out of m in place: the other
  // rows move up, keeping their order, into rows [0, m.rows() − count); the last count rows
  // are left unspecified. A stream of deletion requests removes each request's rows from the
  // data it holds this way instead of uploading the data again (engine/kept_data.h).
  virtual void EraseRows(Matrix<T> m, const int64_t* rows, int64_t count) = 0;

  // --- linear algebra -------------------------------------------------------------------
  // C = alpha · op(A) · op(B) + beta · C
  virtual void Gemm(Op op_a, Op op_b, T alpha, const Matrix<T>& A, const Matrix<T>& B, T beta,
                    Matrix<T> C) = 0;
  // y = alpha · x + beta · y (elementwise over same-shaped matrices)
  virtual void Axpby(T alpha, const Matrix<T>& x, T beta, Matrix<T> y) = 0;
  // Σ_ij x_ij y_ij
  virtual T Dot(const Matrix<T>& x, const Matrix<T>& y) = 0;
  // Σ_ij x_ij
  virtual T Sum(const Matrix<T>& x) = 0;
  // out (rows × 1): out_i = Σ_j A_ij B_ij
  virtual void RowDots(const Matrix<T>& A, const Matrix<T>& B, Matrix<T> out) = 0;
  // out (1 × cols) = alpha · 1ᵀ A + beta · out
  virtual void ColumnSums(T alpha, const Matrix<T>& A, T beta, Matrix<T> out) = 0;
  // A += 1 · rowᵀ (row is 1 × cols): adds a bias to every example
  virtual void AddRow(const Matrix<T>& row, Matrix<T> A) = 0;
  // C = A ⊙ B + beta · C (C may alias A or B when beta = 0)
  virtual void Multiply(const Matrix<T>& A, const Matrix<T>& B, T beta, Matrix<T> C) = 0;
  // out (n × a·b), row i = vec(a_i b_iᵀ) row-major: the per-example gradient of a linear
  // layer's weight, δ_i x_iᵀ, for every example at once.
  virtual void RowOuter(const Matrix<T>& A, const Matrix<T>& B, Matrix<T> out) = 0;

  // out (k × k) = alpha · Xᵀ diag(w) X + beta · out for X (n × k) and weights w (n × 1): a
  // weighted Gram matrix Σᵢ wᵢ xᵢ xᵢᵀ, symmetric, both triangles written (when beta ≠ 0 only
  // out's lower triangle is read: out must be symmetric). The blocks of a linear layer's
  // Hessian Σᵢ Aᵢ ⊗ xᵢ xᵢᵀ are these with w = one entry of the Aᵢ (engine/objective.h,
  // DenseCurvature). Where w has one sign it costs n·k² flops (a symmetric rank-n update of
  // √|w|-scaled rows, SYRK), else 2·n·k² (a GEMM). out must not alias X or w.
  virtual void WeightedGram(T alpha, const Matrix<T>& X, const Matrix<T>& w, T beta,
                            Matrix<T> out) = 0;

  // --- activations ----------------------------------------------------------------------
  // out = σ⁽ᵏ⁾(Z) elementwise, k = order ∈ {0, 1, 2}. out may alias Z.
  virtual void Activate(Activation act, int order, const Matrix<T>& Z, Matrix<T> out) = 0;

  // --- losses (F: n × width outputs, Y: n × target width; labels stored as T) -----------
  // out (n × 1): l(f_i, y_i)
  virtual void LossValues(LossKind loss, const Matrix<T>& F, const Matrix<T>& Y,
                          Matrix<T> out) = 0;
  // G = scale · ∂l(f_i, y_i)/∂f_i, row by row
  virtual void LossGradient(LossKind loss, T scale, const Matrix<T>& F, const Matrix<T>& Y,
                            Matrix<T> G) = 0;
  // out_i = scale · ∇²_f l(f_i, y_i) · v_i   (the loss Hessian is independent of y for all
  // three losses, but Y is passed for symmetry with the others); out overlaps neither F nor V
  virtual void LossHessianProduct(LossKind loss, T scale, const Matrix<T>& F,
                                  const Matrix<T>& V, Matrix<T> out) = 0;
  // out (n × 1): 1 where the prediction is right (argmax f = y; logistic: f > 0 ⇔ y = 1)
  virtual void Correct(LossKind loss, const Matrix<T>& F, const Matrix<T>& Y, Matrix<T> out) = 0;

  // --- dense symmetric matrices (the direct solver; A is p × p, contiguous) --------------
  // A row-major symmetric matrix is its own column-major transpose, so both backends hand
  // it to column-major LAPACK-style routines (Eigen, cuSOLVER) without copying.
  // A ← (A + Aᵀ)/2: removes the rounding asymmetry of a matrix formed column by column.
  virtual void Symmetrize(Matrix<T> A) = 0;
  // In-place Cholesky factorisation A = L Lᵀ of a symmetric A. Returns true with L in the
  // lower triangle (the strict upper triangle is then unspecified), or false when A is not
  // numerically positive definite (A's contents are then unspecified).
  virtual bool CholeskyFactor(Matrix<T> A) = 0;
  // Each row x of X ← A⁻¹ x, with L from CholeskyFactor: L y = x, then Lᵀ x = y.
  virtual void CholeskySolve(const Matrix<T>& L, Matrix<T> X) = 0;
  // The eigenvalues of a symmetric A in ascending order, into `values` (1 × p). With
  // `vectors`, A is overwritten by the orthonormal eigenvectors as its rows (row i belongs
  // to values[i]: A_in = Uᵀ diag(values) U); without, A's contents are then unspecified.
  virtual void SymmetricEigen(Matrix<T> A, Matrix<T> values, bool vectors) = 0;
  // Householder reduction of a symmetric A (n × n) to tridiagonal form, A = Eᵀ T E with E
  // orthogonal: A is overwritten by E (its rows), `diagonal` (1 × n) gets T's diagonal and
  // `off_diagonal` (1 × n) T's sub/superdiagonal, T_{i,i+1} = off_diagonal[i], with
  // off_diagonal[n-1] = 0. About a quarter of SymmetricEigen's cost: no QL iteration, and
  // E comes from blocked Householder products (what a shifted solve with A needs; see
  // engine/kfac_preconditioner.h).
  virtual void SymmetricTridiagonal(Matrix<T> A, Matrix<T> diagonal, Matrix<T> off_diagonal) = 0;
  // Each row x of X (r × n) ← (L D Lᵀ)⁻¹ x for that row's own factors: D = diag(pivots row),
  // L unit lower bidiagonal with L_{j+1,j} = multipliers[row, j] (column n-1 unused). The
  // LDLᵀ factorisation of a symmetric tridiagonal matrix; O(n) per row.
  virtual void TridiagonalSolve(const Matrix<T>& pivots, const Matrix<T>& multipliers,
                                Matrix<T> X) = 0;

  // --- window operations (convolution; kernels/cpu/cpu_window_ops.cc, cuda_window_ops.cu) -
  // With g's geometry, an example x ∈ ℝ^{C×H×W} (one row of X, row-major [C, H, W]) and
  // its output positions (oh, ow) ∈ [0, OH) × [0, OW), OH = g.out_h(), OW = g.out_w(), the
  // input pixel under kernel tap (ki, kj) of position (oh, ow) is
  //   h = oh·stride_h − pad_h + ki·dilation_h,   w = ow·stride_w − pad_w + kj·dilation_w,
  // and x[c, h, w] reads as 0 outside [0, H) × [0, W) (zero padding).
  //
  // Im2Col: X (count × C·H·W) → cols ((count·OH·OW) × C·kh·kw), the patch matrix:
  //   cols[(i·OH + oh)·OW + ow, (c·kh + ki)·kw + kj] = x_i[c, h, w].
  // A convolution with weight W ([C_out, C, kh, kw] = C_out × C·kh·kw row-major, PyTorch's
  // layout) is then one GEMM, Z = cols · Wᵀ: (count·OH·OW) × C_out, i.e. each example's
  // output channels-last, [OH, OW, C_out] (TransposeRows turns it to [C_out, OH, OW]).
  virtual void Im2Col(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> cols) = 0;
  // Col2Im, Im2Col's adjoint (⟨Im2Col(x), c⟩ = ⟨x, Col2Im(c)⟩): dX (count × C·H·W) =
  //   beta · dX + S(cols),  S(cols)_i[c, h, w] = Σ over the (oh, ow, ki, kj) that read
  //   x_i[c, h, w] of cols[(i·OH + oh)·OW + ow, (c·kh + ki)·kw + kj]
  // (taps in the padding are dropped). With cols = δZ · W it is a convolution's input
  // gradient. beta = 0 never reads dX. Deterministic: no atomics, a fixed summation order.
  virtual void Col2Im(const WindowGeometry& g, const Matrix<T>& cols, T beta, Matrix<T> dX) = 0;
  // Each row of src (n × a·b), read as an a × b row-major matrix M, is written to the same
  // row of dst as Mᵀ (b × a row-major): dst[r, q·a + p] = src[r, p·b + q]. With a = OH·OW,
  // b = C turns channels-last [OH, OW, C] into channels-first [C, OH, OW]; a = C, b = OH·OW
  // goes back. dst must not alias src.
  virtual void TransposeRows(int64_t a, int64_t b, const Matrix<T>& src, Matrix<T> dst) = 0;

  // --- convolution products (conv2d's passes; kernels/conv_ops.h) ---------------------------
  // With X̃_i = Im2Col(x_i) (P × K: P = OH·OW positions, K = C·kh·kw), a weight W (M × K)
  // and each example's output channels-first (one row of Y or D read as M × P):
  //   ConvForward         Y_i = beta·Y_i + W X̃_iᵀ (+ b 1ᵀ when b, 1 × M, is not empty)
  //   ConvWeightGradient  dW = beta·dW + Σ_i D_i X̃_i,  db = beta·db + Σ_i D_i 1  (db optional)
  //   ConvInputGradient   dX_i = beta·dX_i + Col2Im(D_iᵀ W)
  // beta = 0 never reads the output. `cols` ((count·P) × K) and `z` ((count·P) × M) are
  // workspace: the default implementation (ComposedConv*, kernels/conv_ops.cc) runs on them
  // through Im2Col, Gemm, TransposeRows and Col2Im; the CPU's fused one (one example at a
  // time, its patches in cache, no transposes) does not touch them.
  virtual void ConvForward(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& W,
                           const Matrix<T>& b, T beta, Matrix<T> Y, Matrix<T> cols, Matrix<T> z) {
    ComposedConvForward(*this, g, X, W, b, beta, Y, cols, z);
  }
  virtual void ConvWeightGradient(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& D,
                                  T beta, Matrix<T> dW, Matrix<T> db, Matrix<T> cols,
                                  Matrix<T> z) {
    ComposedConvWeightGradient(*this, g, X, D, beta, dW, db, cols, z);
  }
  virtual void ConvInputGradient(const WindowGeometry& g, const Matrix<T>& D, const Matrix<T>& W,
                                 T beta, Matrix<T> dX, Matrix<T> cols, Matrix<T> z) {
    ComposedConvInputGradient(*this, g, D, W, beta, dX, cols, z);
  }

  // --- row and column scaling (normalisation layers; kernels/cpu/cpu_row_ops.cc,
  // kernels/cuda/cuda_row_ops.cu) -----------------------------------------------------------
  // LayerNorm normalises each example (a row) by its own mean and standard deviation;
  // BatchNorm scales each feature (a column) by fixed statistics. Both are these four ops
  // plus the ones above: a per-row mean is a Gemm with a ones vector, (1/d)·A·1, a per-row
  // Σ a⊙b is RowDots, a per-column sum ColumnSums.
  //
  // Per-channel factors on [C, H, W] rows (one example = C·H·W values, channel-major) need
  // no op of their own: a factor c (C values) is expanded to the 1 × C·H·W row it means by
  // the rank-1 Gemm c·1ᵀ into the C × H·W reshape of that row, then used with ScaleColumns
  // or AddRow; and per-channel sums are Gemms of the reshapes with a ones vector (for
  // contiguous storage: a count × C·H·W batch is a (count·C) × H·W matrix, whose product
  // with 1 (H·W × 1) is the count × C matrix of per-example channel sums).
  //
  // Every op reads each element before writing it, so `out` may alias A (with beta = 0,
  // out is never read: NaN there is overwritten).

  // out = alpha · diag(s) · A + beta · out, s (rows × 1): out_ij = alpha·s_i·A_ij + beta·out_ij.
  virtual void ScaleRows(T alpha, const Matrix<T>& s, const Matrix<T>& A, T beta,
                         Matrix<T> out) = 0;
  // out = alpha · A · diag(r) + beta · out, r (1 × cols): out_ij = alpha·A_ij·r_j + beta·out_ij.
  virtual void ScaleColumns(T alpha, const Matrix<T>& A, const Matrix<T>& r, T beta,
                            Matrix<T> out) = 0;
  // A += alpha · c · 1ᵀ, c (rows × 1): A_ij += alpha · c_i (e.g. subtracts each row's mean;
  // the per-row counterpart of AddRow).
  virtual void AddColumn(T alpha, const Matrix<T>& c, Matrix<T> A) = 0;
  // out = 1 / √(x + shift) elementwise: the inverse standard deviation (σ² + ε)^(−1/2).
  virtual void InverseSqrt(const Matrix<T>& x, T shift, Matrix<T> out) = 0;

  // --- pooling (kernels/pool_math.h: the per-element formulas both backends evaluate) ----
  // X (n × C·H·W) holds one example [C, H, W] per row, row-major; a pooled output (n ×
  // C·OH·OW) holds [C, OH, OW] per row, with g's out_h(), out_w() as OH, OW. The window of
  // output (c, oh, ow) is
  //   W(c, oh, ow) = {(c, h, w) : h = oh·sh − ph + a·dh, w = ow·sw − pw + b·dw, 0 ≤ a < kh,
  //                   0 ≤ b < kw, 0 ≤ h < H, 0 ≤ w < W}
  // (padding takes no part in a maximum and counts as zeros in an average). g must be a
  // pooling geometry (PoolingGeometryProblem(g) in kernels/pool_math.h is empty: padding
  // at most half the kernel, as PyTorch requires, and every window meets the input).
  //
  // Max pooling: Y_(c,oh,ow) = max over W(c, oh, ow), and argmax_(c,oh,ow) = c·H·W + h·W + w
  // of the first maximal element in row-major window order (a, then b), as PyTorch's
  // MaxPool2d chooses, so the gradient goes where PyTorch sends it; a NaN counts as maximal
  // (PyTorch propagates it). Y and argmax are n × C·OH·OW; the index is stored as a T, exact
  // while C·H·W ≤ 2^digits(T) (2^24 in f32; checked). Max pooling is piecewise linear:
  // with the argmax kept, its derivative, R-operator and adjoint are GatherIndexed and
  // ScatterAddIndexed with that index.
  virtual void MaxPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y,
                       Matrix<T> argmax) = 0;
  // dst_ij = src_(i, index_ij): a fixed selection from each row (src n × m; index, dst
  // n × k; index values integers in [0, m), stored as T).
  virtual void GatherIndexed(const Matrix<T>& src, const Matrix<T>& index, Matrix<T> dst) = 0;
  // dst ← beta·dst, then dst_(i, index_ij) += src_ij for every j: GatherIndexed's adjoint,
  // ⟨Gather(a), b⟩ = ⟨a, Scatter(b)⟩ (src, index n × k; dst n × m). Repeated indices in a
  // row (overlapping max-pooling windows choosing one input) accumulate, deterministically:
  // each row is summed in the order of j on both backends, never with atomics.
  virtual void ScatterAddIndexed(const Matrix<T>& src, const Matrix<T>& index, T beta,
                                 Matrix<T> dst) = 0;
  // Average pooling, PyTorch's AvgPool2d with count_include_pad = True (its default):
  //   Y_(c,oh,ow) = (1 / (kh·kw)) Σ_{W(c,oh,ow)} X,
  // the divisor kh·kw whatever part of the window lies in the padding. A linear map P;
  // global average pooling is P with the kernel H × W.
  virtual void AvgPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y) = 0;
  // Its adjoint: dX ← beta·dX + Pᵀ dY, every input getting 1/(kh·kw) of the dY of each
  // window it lies in (⟨P x, y⟩ = ⟨x, Pᵀ y⟩). Each input element sums its own windows, so
  // overlapping windows need no atomics.
  virtual void AvgPoolAdjoint(const WindowGeometry& g, const Matrix<T>& dY, T beta,
                              Matrix<T> dX) = 0;

  // --- embedding bags (engine/layers/embedding_bag.h) ------------------------------------
  // ids (count × L) holds token ids as exact integer values of T (f32 is exact below 2²⁴);
  // an id equal to padding_idx (−1: none) is skipped. For row i let
  //   S_i = {l : ids[i,l] ≠ padding_idx},  w_i = 1 (sum) or 1/|S_i| (mean; 0 when S_i = ∅),
  // so that an all-padding row contributes nothing. Every other id must lie in
  // [0, num_embeddings): LETHE_CHECK (the engine checks the data once, naming the row).
  // The ops are linear in the table and in delta, so each serves values, directions and
  // R-products alike: ⟨∇_table l_i, V⟩ = ⟨δ_i, EmbeddingBag(ids, V)_i⟩.
  //
  // out (count × dim) = w_i Σ_{l∈S_i} table[ids[i,l], :] — nn.EmbeddingBag(mode, padding_idx)
  // on a 2-D input; table is num_embeddings × dim. out is overwritten.
  virtual void EmbeddingBag(const Matrix<T>& ids, const Matrix<T>& table, int64_t padding_idx,
                            bool mean, Matrix<T> out) = 0;
  // The adjoint: grad_table (num_embeddings × dim) += Σ_i w_i Σ_{l∈S_i} e_{ids[i,l]} δ_iᵀ for
  // delta (count × dim) — a scatter-add of rows; a row repeated in a bag is added each time.
  // Deterministic on every backend (fixed summation order, no floating-point atomics).
  virtual void EmbeddingBagAdjoint(const Matrix<T>& ids, const Matrix<T>& delta,
                                   int64_t padding_idx, bool mean, Matrix<T> grad_table) = 0;
  // Per-example gradients: out (count × num_embeddings·dim) is overwritten with row i =
  // vec(w_i Σ_{l∈S_i} e_{ids[i,l]} δ_iᵀ) row-major (the adjoint of example i alone); zeros
  // wherever row i's bag has no id. num_embeddings = out.cols() / delta.cols().
  virtual void EmbeddingBagPerExample(const Matrix<T>& ids, const Matrix<T>& delta,
                                      int64_t padding_idx, bool mean, Matrix<T> out) = 0;
};

// The sizes of C = op(A) · op(B): C is m × n, the inner dimension k. Checks that A, B and C
// agree (every backend's Gemm starts here).
struct GemmShape {
  bool ta, tb;  // op_a, op_b transpose
  int64_t m, n, k;
};
template <typename T>
GemmShape CheckGemmShape(Op op_a, Op op_b, const Matrix<T>& A, const Matrix<T>& B,
                         const Matrix<T>& C) {
  const bool ta = op_a == Op::kTranspose, tb = op_b == Op::kTranspose;
  const int64_t m = ta ? A.cols() : A.rows(), k = ta ? A.rows() : A.cols();
  const int64_t kb = tb ? B.cols() : B.rows(), n = tb ? B.rows() : B.cols();
  LETHE_CHECK(k == kb && C.rows() == m && C.cols() == n, "gemm ", m, "x", k, " * ", kb, "x", n,
              " -> ", C.rows(), "x", C.cols());
  return {ta, tb, m, n, k};
}

// Checks EraseRows' arguments: rows[0..count) strictly increasing within m (every backend's
// EraseRows starts here).
template <typename T>
void CheckEraseRows(const Matrix<T>& m, const int64_t* rows, int64_t count) {
  LETHE_CHECK(count >= 0 && count <= m.rows(), "erase ", count, " of ", m.rows(), " rows");
  for (int64_t j = 0; j < count; ++j)
    LETHE_CHECK(rows[j] >= 0 && rows[j] < m.rows() && (j == 0 || rows[j] > rows[j - 1]),
                "erase row ", rows[j], " (", j, " of ", count, ") of ", m.rows());
}

// The number of examples of an Im2Col / Col2Im pair X (count × C·H·W) and cols
// ((count·OH·OW) × C·kh·kw), after checking that g is a valid geometry (kernel, stride and
// dilation ≥ 1, padding ≥ 0, the dilated kernel no larger than the padded input, so that
// there is at least one output position: out_h()'s division truncates towards zero, which
// is the floor only for a non-negative numerator) and that the shapes agree.
template <typename T>
int64_t CheckWindowShapes(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& cols) {
  LETHE_CHECK(g.channels >= 1 && g.height >= 1 && g.width >= 1 && g.kernel_h >= 1 &&
                  g.kernel_w >= 1 && g.stride_h >= 1 && g.stride_w >= 1 && g.pad_h >= 0 &&
                  g.pad_w >= 0 && g.dilation_h >= 1 && g.dilation_w >= 1 &&
                  g.height + 2 * g.pad_h >= g.dilation_h * (g.kernel_h - 1) + 1 &&
                  g.width + 2 * g.pad_w >= g.dilation_w * (g.kernel_w - 1) + 1,
              "window geometry C ", g.channels, " H ", g.height, " W ", g.width, " kernel ",
              g.kernel_h, "x", g.kernel_w, " stride ", g.stride_h, "x", g.stride_w, " padding ",
              g.pad_h, "x", g.pad_w, " dilation ", g.dilation_h, "x", g.dilation_w);
  const int64_t count = X.rows();
  LETHE_CHECK(X.cols() == g.in_size() && cols.rows() == count * g.positions() &&
                  cols.cols() == g.patch_size(),
              "im2col ", X.rows(), "x", X.cols(), " <-> ", cols.rows(), "x", cols.cols(),
              " for C·H·W = ", g.in_size(), ", OH·OW = ", g.positions(),
              ", C·kh·kw = ", g.patch_size());
  return count;
}

// ‖x‖₂ through the interface.
template <typename T>
T Norm(Backend<T>& backend, const Matrix<T>& x);

struct BackendOptions {
  DeviceKind device = DeviceKind::kCpu;
  int threads = 0;  // CPU threads; 0 = all cores
  int cuda_device = 0;
};

// Throws lethe::Error when the device is unavailable (no CUDA build, no GPU or driver).
template <typename T>
std::unique_ptr<Backend<T>> MakeBackend(const BackendOptions& options);

}  // namespace lethe::kernels
