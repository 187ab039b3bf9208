// CUDA pooling: one thread per output element (max and average pooling, gathers) or per
// input element (the average pool's adjoint, which sums the windows that hold its element:
// a gather, so overlapping windows need no atomics), evaluating kernels/pool_math.h as the
// CPU does. The scatter-add runs one thread per row, adding that row's entries in the
// order of j: an input chosen by several overlapping windows is summed in a fixed order
// (atomicAdd would make the bits depend on scheduling), at the price of parallelism over
// rows only — a batch has thousands of rows, and each row's work is one pass over its
// pooled outputs.
//
// The CPU checks every index; here an index outside [0, m) is skipped by the scatter and
// gathers a NaN, so a bad index is visible in the result instead of corrupting memory.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/pool_ops.h"
#include "kernels/pool_math.h"

namespace lethe::kernels::cuda {
namespace {

// The integer an index element holds, or -1 when it is outside [0, limit).
template <typename T>
__device__ int64_t IndexOrNone(T value, int64_t limit) {
  return value >= T(0) && value < T(limit) ? static_cast<int64_t>(value) : -1;
}

template <typename T>
struct MaxPoolOp {
  PoolShape s;
  const T* x;
  T* y;
  T* argmax;
  int64_t ldx, ldy, lda;
  __device__ void operator()(int64_t r, int64_t o) const {
    T value;
    int64_t index;
    MaxPoolAt(s, x + r * ldx, o, &value, &index);
    y[r * ldy + o] = value;
    argmax[r * lda + o] = static_cast<T>(index);
  }
};

template <typename T>
struct AvgPoolOp {
  PoolShape s;
  const T* x;
  T* y;
  int64_t ldx, ldy;
  __device__ void operator()(int64_t r, int64_t o) const {
    y[r * ldy + o] = AvgPoolAt(s, x + r * ldx, o);
  }
};

// dX = beta · dX + Pᵀ dY; beta = 0 never reads dX (NaN-safe, as the CPU).
template <typename T>
struct AvgPoolAdjointOp {
  PoolShape s;
  const T* dy;
  T* dx;
  int64_t ldy, ldx;
  T beta;
  __device__ void operator()(int64_t r, int64_t e) const {
    T v = AvgPoolAdjointAt(s, dy + r * ldy, e);
    if (beta != T(0)) v += beta * dx[r * ldx + e];
    dx[r * ldx + e] = v;
  }
};

template <typename T>
struct GatherIndexedOp {
  const T* src;
  const T* index;
  T* dst;
  int64_t lds, ldi, ldd, m;
  __device__ void operator()(int64_t r, int64_t j) const {
    const int64_t k = IndexOrNone(index[r * ldi + j], m);
    dst[r * ldd + j] = k >= 0 ? src[r * lds + k] : T(NAN);
  }
};

template <typename T>
struct ScaleOp {
  T* x;
  int64_t ldx;
  T beta;
  __device__ void operator()(int64_t r, int64_t c) const {
    x[r * ldx + c] = beta == T(0) ? T(0) : beta * x[r * ldx + c];
  }
};

// Row r's entries added in the order of j (launched with one column: f(r, 0)).
template <typename T>
struct ScatterAddRowOp {
  const T* src;
  const T* index;
  T* dst;
  int64_t lds, ldi, ldd, k, m;
  __device__ void operator()(int64_t r, int64_t) const {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t at = IndexOrNone(index[r * ldi + j], m);
      if (at >= 0) dst[r * ldd + at] += src[r * lds + j];
    }
  }
};

}  // namespace

template <typename T>
void MaxPool(cudaStream_t stream, const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y,
             Matrix<T> argmax) {
  CheckPoolingCall(g, X, Y);
  LETHE_CHECK(argmax.rows() == Y.rows() && argmax.cols() == Y.cols());
  LETHE_CHECK(g.in_size() <= kExactIndexLimit<T>, "max pooling over ", g.in_size(),
              " inputs per example: the argmax is not exact in this precision");
  LaunchElements(stream, Y.rows(), Y.cols(),
         MaxPoolOp<T>{MakePoolShape(g), X.data(), Y.data(), argmax.data(), X.ld(), Y.ld(),
                      argmax.ld()});
}

template <typename T>
void GatherIndexed(cudaStream_t stream, const Matrix<T>& src, const Matrix<T>& index,
                   Matrix<T> dst) {
  CheckIndexedCall(src, index, dst);
  LaunchElements(stream, dst.rows(), dst.cols(),
         GatherIndexedOp<T>{src.data(), index.data(), dst.data(), src.ld(), index.ld(), dst.ld(),
                            src.cols()});
}

template <typename T>
void ScatterAddIndexed(cudaStream_t stream, const Matrix<T>& src, const Matrix<T>& index, T beta,
                       Matrix<T> dst) {
  CheckIndexedCall(dst, index, src);
  if (beta != T(1)) LaunchElements(stream, dst.rows(), dst.cols(), ScaleOp<T>{dst.data(), dst.ld(), beta});
  if (src.cols() == 0) return;
  LaunchElements(stream, dst.rows(), 1,
         ScatterAddRowOp<T>{src.data(), index.data(), dst.data(), src.ld(), index.ld(), dst.ld(),
                            src.cols(), dst.cols()});
}

template <typename T>
void AvgPool(cudaStream_t stream, const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y) {
  CheckPoolingCall(g, X, Y);
  LaunchElements(stream, Y.rows(), Y.cols(),
         AvgPoolOp<T>{MakePoolShape(g), X.data(), Y.data(), X.ld(), Y.ld()});
}

template <typename T>
void AvgPoolAdjoint(cudaStream_t stream, const WindowGeometry& g, const Matrix<T>& dY, T beta,
                    Matrix<T> dX) {
  CheckPoolingCall(g, dX, dY);
  LaunchElements(stream, dX.rows(), dX.cols(),
         AvgPoolAdjointOp<T>{MakePoolShape(g), dY.data(), dX.data(), dY.ld(), dX.ld(), beta});
}

#define LETHE_INSTANTIATE(T)                                                                   \
  template void MaxPool<T>(cudaStream_t, const WindowGeometry&, const Matrix<T>&, Matrix<T>,   \
                           Matrix<T>);                                                         \
  template void GatherIndexed<T>(cudaStream_t, const Matrix<T>&, const Matrix<T>&, Matrix<T>); \
  template void ScatterAddIndexed<T>(cudaStream_t, const Matrix<T>&, const Matrix<T>&, T,      \
                                     Matrix<T>);                                               \
  template void AvgPool<T>(cudaStream_t, const WindowGeometry&, const Matrix<T>&, Matrix<T>);  \
  template void AvgPoolAdjoint<T>(cudaStream_t, const WindowGeometry&, const Matrix<T>&, T,    \
                                  Matrix<T>);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe::kernels::cuda
