// Row and column scaling on the GPU: one thread per element in a grid-stride loop (as the
// elementwise ops of cuda_backend.cu), each element read before it is written, so out may
// alias A; beta = 0 never reads out (NaN there is overwritten, as on the CPU).
#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/row_ops.h"

namespace lethe::kernels::cuda {
namespace {

void CheckSameShape(int64_t r1, int64_t c1, int64_t r2, int64_t c2) {
  LETHE_CHECK(r1 == r2 && c1 == c2, "shape ", r1, "x", c1, " vs ", r2, "x", c2);
}

// out[r, c] = alpha · factor[r · row_step + c · col_step] · a[r, c] + beta · out[r, c]:
// row_step = ld of s, col_step = 0 for ScaleRows; row_step = 0, col_step = 1 for ScaleColumns.
template <typename T>
struct ScaleOp {
  const T* factor;
  const T* a;
  T* out;
  int64_t row_step, col_step, lda, ldo;
  T alpha, beta;
  __device__ void operator()(int64_t r, int64_t c) const {
    T v = alpha * factor[r * row_step + c * col_step] * a[r * lda + c];
    if (beta != T(0)) v += beta * out[r * ldo + c];
    out[r * ldo + c] = v;
  }
};

template <typename T>
struct AddColumnOp {
  const T* column;
  T* a;
  int64_t ldc, lda;
  T alpha;
  __device__ void operator()(int64_t r, int64_t c) const {
    a[r * lda + c] += alpha * column[r * ldc];
  }
};

template <typename T>
struct InverseSqrtOp {
  const T* x;
  T* out;
  int64_t ldx, ldo;
  T shift;
  // 1/sqrt, both correctly rounded (nvcc's default -prec-div/-prec-sqrt), as on the CPU;
  // not rsqrt, which is off by up to 2 ulp.
  __device__ void operator()(int64_t r, int64_t c) const {
    out[r * ldo + c] = T(1) / sqrt(x[r * ldx + c] + shift);
  }
};

}  // namespace

template <typename T>
void ScaleRows(CudaContext& context, T alpha, const Matrix<T>& s, const Matrix<T>& A, T beta,
               Matrix<T> out) {
  LETHE_CHECK(s.rows() == A.rows() && s.cols() == 1, "ScaleRows: s ", s.rows(), "x", s.cols(),
              " for ", A.rows(), " rows");
  CheckSameShape(A.rows(), A.cols(), out.rows(), out.cols());
  LaunchElements(
      context.stream(), A.rows(), A.cols(),
      ScaleOp<T>{s.data(), A.data(), out.data(), s.ld(), 0, A.ld(), out.ld(), alpha, beta});
}

template <typename T>
void ScaleColumns(CudaContext& context, T alpha, const Matrix<T>& A, const Matrix<T>& r, T beta,
                  Matrix<T> out) {
  LETHE_CHECK(r.rows() == 1 && r.cols() == A.cols(), "ScaleColumns: r ", r.rows(), "x", r.cols(),
              " for ", A.cols(), " columns");
  CheckSameShape(A.rows(), A.cols(), out.rows(), out.cols());
  LaunchElements(context.stream(), A.rows(), A.cols(),
                 ScaleOp<T>{r.data(), A.data(), out.data(), 0, 1, A.ld(), out.ld(), alpha, beta});
}

template <typename T>
void AddColumn(CudaContext& context, T alpha, const Matrix<T>& c, Matrix<T> A) {
  LETHE_CHECK(c.rows() == A.rows() && c.cols() == 1, "AddColumn: c ", c.rows(), "x", c.cols(),
              " for ", A.rows(), " rows");
  LaunchElements(context.stream(), A.rows(), A.cols(),
                 AddColumnOp<T>{c.data(), A.data(), c.ld(), A.ld(), alpha});
}

template <typename T>
void InverseSqrt(CudaContext& context, const Matrix<T>& x, T shift, Matrix<T> out) {
  CheckSameShape(x.rows(), x.cols(), out.rows(), out.cols());
  LaunchElements(context.stream(), x.rows(), x.cols(),
                 InverseSqrtOp<T>{x.data(), out.data(), x.ld(), out.ld(), shift});
}

#define LETHE_INSTANTIATE(T)                                                                     \
  template void ScaleRows<T>(CudaContext&, T, const Matrix<T>&, const Matrix<T>&, T, Matrix<T>); \
  template void ScaleColumns<T>(CudaContext&, T, const Matrix<T>&, const Matrix<T>&, T,          \
                                Matrix<T>);                                                      \
  template void AddColumn<T>(CudaContext&, T, const Matrix<T>&, Matrix<T>);                      \
  template void InverseSqrt<T>(CudaContext&, const Matrix<T>&, T, Matrix<T>);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe::kernels::cuda
