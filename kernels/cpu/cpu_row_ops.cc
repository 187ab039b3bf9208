// Row and column scaling on the CPU: plain loops over rows, each element read before it
// is written (so out may alias A), parallel over rows when large. Memory-bound: one pass
// over A (and out when beta ≠ 0).
#include <cmath>

#include "common/error.h"
#include "kernels/cpu/row_ops.h"

namespace lethe::kernels::cpu {
namespace {

// As in cpu_backend.cc: below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelThreshold = 1 << 18;

void CheckSameShape(int64_t r1, int64_t c1, int64_t r2, int64_t c2) {
  LETHE_CHECK(r1 == r2 && c1 == c2, "shape ", r1, "x", c1, " vs ", r2, "x", c2);
}

// out_ij = alpha · f(i, j) · A_ij + beta · out_ij, with beta = 0 never reading out.
template <typename T, typename Factor>
void ScaleElements(T alpha, const Matrix<T>& A, T beta, Matrix<T> out, Factor factor) {
  CheckSameShape(A.rows(), A.cols(), out.rows(), out.cols());
  const T* a = A.data();
  T* o = out.data();
  const int64_t lda = A.ld(), ldo = out.ld(), cols = A.cols();
#pragma omp parallel for if (A.size() > kParallelThreshold)
  for (int64_t i = 0; i < A.rows(); ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const T v = alpha * factor(i, j) * a[i * lda + j];
      o[i * ldo + j] = beta == T(0) ? v : v + beta * o[i * ldo + j];
    }
}

}  // namespace

template <typename T>
void ScaleRows(T alpha, const Matrix<T>& s, const Matrix<T>& A, T beta, Matrix<T> out) {
  LETHE_CHECK(s.rows() == A.rows() && s.cols() == 1, "ScaleRows: s ", s.rows(), "x", s.cols(),
              " for ", A.rows(), " rows");
  const T* f = s.data();
  const int64_t ld = s.ld();
  ScaleElements(alpha, A, beta, out, [f, ld](int64_t i, int64_t) { return f[i * ld]; });
}

template <typename T>
void ScaleColumns(T alpha, const Matrix<T>& A, const Matrix<T>& r, T beta, Matrix<T> out) {
  LETHE_CHECK(r.rows() == 1 && r.cols() == A.cols(), "ScaleColumns: r ", r.rows(), "x", r.cols(),
              " for ", A.cols(), " columns");
  const T* f = r.data();
  ScaleElements(alpha, A, beta, out, [f](int64_t, int64_t j) { return f[j]; });
}

template <typename T>
void AddColumn(T alpha, const Matrix<T>& c, Matrix<T> A) {
  LETHE_CHECK(c.rows() == A.rows() && c.cols() == 1, "AddColumn: c ", c.rows(), "x", c.cols(),
              " for ", A.rows(), " rows");
  T* a = A.data();
  const int64_t lda = A.ld(), ldc = c.ld(), cols = A.cols();
#pragma omp parallel for if (A.size() > kParallelThreshold)
  for (int64_t i = 0; i < A.rows(); ++i) {
    const T add = alpha * c.data()[i * ldc];
    for (int64_t j = 0; j < cols; ++j) a[i * lda + j] += add;
  }
}

template <typename T>
void InverseSqrt(const Matrix<T>& x, T shift, Matrix<T> out) {
  CheckSameShape(x.rows(), x.cols(), out.rows(), out.cols());
  const T* in = x.data();
  T* o = out.data();
  const int64_t ldx = x.ld(), ldo = out.ld(), cols = x.cols();
#pragma omp parallel for if (x.size() > kParallelThreshold)
  for (int64_t i = 0; i < x.rows(); ++i)
    for (int64_t j = 0; j < cols; ++j) o[i * ldo + j] = T(1) / std::sqrt(in[i * ldx + j] + shift);
}

#define LETHE_INSTANTIATE(T)                                                          \
  template void ScaleRows<T>(T, const Matrix<T>&, const Matrix<T>&, T, Matrix<T>);    \
  template void ScaleColumns<T>(T, const Matrix<T>&, const Matrix<T>&, T, Matrix<T>); \
  template void AddColumn<T>(T, const Matrix<T>&, Matrix<T>);                         \
  template void InverseSqrt<T>(const Matrix<T>&, T, Matrix<T>);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe::kernels::cpu
