// The convolution products (kernels/backend.h: ConvForward, ConvWeightGradient,
// ConvInputGradient) composed from Im2Col, Gemm, TransposeRows and Col2Im on the caller's
// workspace: Backend's default (the CUDA backend uses it: each piece is one kernel or one
// cuBLAS call over the whole batch), and the reference the CPU's fused versions are tested
// against (tests/kernels/test_conv_ops.cc).
//
// In the patch matrix's terms (cols = Im2Col(X), (count·P) × K, row (i, t) = x̃_{i,t}) and
// channels-last products (z, (count·P) × M, row (i, t) = example i's M channels at t):
//   forward   z = cols Wᵀ + 1 bᵀ, Y = TransposeRows(z)        (Y_i = W X̃_iᵀ + b 1ᵀ)
//   weight    z = TransposeRows(D), dW = zᵀ cols, db = 1ᵀ z    (Σ_i D_i X̃_i, Σ_i D_i 1)
//   input     z = TransposeRows(D), dX = Col2Im(z W)           (Col2Im(D_iᵀ W))
#include "kernels/backend.h"

namespace lethe::kernels {
namespace {

// The workspace views for `count` examples, checked.
template <typename T>
std::pair<Matrix<T>, Matrix<T>> Workspace(const WindowGeometry& g, int64_t count, int64_t M,
                                          const Matrix<T>& cols, const Matrix<T>& z) {
  const int64_t rows = count * g.positions();
  LETHE_CHECK(cols.rows() >= rows && cols.cols() == g.patch_size() && z.rows() >= rows &&
                  z.cols() == M && z.contiguous(),
              "conv workspace ", cols.rows(), "x", cols.cols(), ", ", z.rows(), "x", z.cols(),
              " for ", rows, " positions, K = ", g.patch_size(), ", M = ", M);
  return {cols.Rows(0, rows), z.Rows(0, rows)};
}

}  // namespace

template <typename T>
void ComposedConvForward(Backend<T>& be, const WindowGeometry& g, const Matrix<T>& X,
                         const Matrix<T>& W, const Matrix<T>& b, T beta, Matrix<T> Y,
                         Matrix<T> cols, Matrix<T> z) {
  const int64_t count = X.rows(), M = W.rows(), P = g.positions();
  LETHE_CHECK(Y.rows() == count && Y.cols() == M * P && W.cols() == g.patch_size() &&
              (b.empty() || (b.rows() == 1 && b.cols() == M)));
  auto [c, zz] = Workspace(g, count, M, cols, z);
  be.Im2Col(g, X, c);
  // beta ≠ 0: Y's current values, channels-last, are the GEMM's C.
  if (beta != T(0)) be.TransposeRows(M, P, Y, zz.Reshaped(count, P * M));
  be.Gemm(Op::kNone, Op::kTranspose, T(1), c, W, beta, zz);
  if (!b.empty()) be.AddRow(b, zz);
  be.TransposeRows(P, M, zz.Reshaped(count, P * M), Y);
}

template <typename T>
void ComposedConvWeightGradient(Backend<T>& be, const WindowGeometry& g, const Matrix<T>& X,
                                const Matrix<T>& D, T beta, Matrix<T> dW, Matrix<T> db,
                                Matrix<T> cols, Matrix<T> z) {
  const int64_t count = X.rows(), M = dW.rows(), P = g.positions();
  LETHE_CHECK(D.rows() == count && D.cols() == M * P && dW.cols() == g.patch_size() &&
              (db.empty() || (db.rows() == 1 && db.cols() == M)));
  auto [c, zz] = Workspace(g, count, M, cols, z);
  be.TransposeRows(M, P, D, zz.Reshaped(count, P * M));
  be.Im2Col(g, X, c);
  be.Gemm(Op::kTranspose, Op::kNone, T(1), zz, c, beta, dW);
  if (!db.empty()) be.ColumnSums(T(1), zz, beta, db);
}

template <typename T>
void ComposedConvInputGradient(Backend<T>& be, const WindowGeometry& g, const Matrix<T>& D,
                               const Matrix<T>& W, T beta, Matrix<T> dX, Matrix<T> cols,
                               Matrix<T> z) {
  const int64_t count = D.rows(), M = W.rows(), P = g.positions();
  LETHE_CHECK(D.cols() == M * P && W.cols() == g.patch_size() && dX.rows() == count &&
              dX.cols() == g.in_size());
  auto [c, zz] = Workspace(g, count, M, cols, z);
  be.TransposeRows(M, P, D, zz.Reshaped(count, P * M));
  be.Gemm(Op::kNone, Op::kNone, T(1), zz, W, T(0), c);
  be.Col2Im(g, c, beta, dX);
}

#define LETHE_INSTANTIATE(T)                                                                  \
  template void ComposedConvForward<T>(Backend<T>&, const WindowGeometry&, const Matrix<T>&,  \
                                       const Matrix<T>&, const Matrix<T>&, T, Matrix<T>,      \
                                       Matrix<T>, Matrix<T>);                                 \
  template void ComposedConvWeightGradient<T>(Backend<T>&, const WindowGeometry&,             \
                                              const Matrix<T>&, const Matrix<T>&, T, Matrix<T>, \
                                              Matrix<T>, Matrix<T>, Matrix<T>);               \
  template void ComposedConvInputGradient<T>(Backend<T>&, const WindowGeometry&,              \
                                             const Matrix<T>&, const Matrix<T>&, T, Matrix<T>, \
                                             Matrix<T>, Matrix<T>);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe::kernels
