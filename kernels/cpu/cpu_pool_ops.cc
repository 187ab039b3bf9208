// CPU pooling: one loop over every output element (or, for the adjoint, every input
// element) evaluating kernels/pool_math.h, parallel over rows and elements when large.
// Each element is written by one thread from a sum in a fixed order, so results do not
// depend on the thread count.
#include "kernels/cpu/cpu_pool_ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/pool_math.h"

namespace lethe::kernels::cpu {
namespace {

// As the CPU backend's elementwise loops: below this many elements one thread is faster
// than a parallel region's start and barrier.
constexpr int64_t kParallelThreshold = 1 << 18;

// Whether `elements` outputs (or inputs, for the adjoint), each visiting at most
// min(kh, H)·min(kw, W) taps (pool_math.h's WindowTaps), are worth a parallel region.
// Multiplying by kh·kw instead overflowed for the large kernels PyTorch allows.
bool Parallel(int64_t elements, const PoolShape& s) {
  const int64_t taps = std::min(s.kernel_h, s.height) * std::min(s.kernel_w, s.width);
  int64_t work;
  return __builtin_mul_overflow(elements, taps, &work) || work > kParallelThreshold;
}

// The integer an index matrix holds, checked: a non-integer or out-of-range index is a
// bug in the caller (indices come from MaxPool), not the user's fault.
template <typename T>
int64_t CheckedIndex(T value, int64_t limit) {
  const int64_t k = static_cast<int64_t>(value);
  LETHE_CHECK(value >= T(0) && value < T(limit) && T(k) == value, "index ", value, " outside [0, ",
              limit, ") or not an integer");
  return k;
}

}  // namespace

template <typename T>
void MaxPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y, Matrix<T> argmax) {
  CheckPoolingCall(g, X, Y);
  LETHE_CHECK(argmax.rows() == Y.rows() && argmax.cols() == Y.cols());
  LETHE_CHECK(g.in_size() <= kExactIndexLimit<T>, "max pooling over ", g.in_size(),
              " inputs per example: the argmax is not exact in this precision");
  const PoolShape s = MakePoolShape(g);
  const int64_t n = X.rows(), outputs = Y.cols();
#pragma omp parallel for collapse(2) if (Parallel(Y.size(), s))
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < outputs; ++o) {
      T value;
      int64_t index;
      MaxPoolAt(s, X.data() + i * X.ld(), o, &value, &index);
      Y.data()[i * Y.ld() + o] = value;
      argmax.data()[i * argmax.ld() + o] = static_cast<T>(index);
    }
}

template <typename T>
void GatherIndexed(const Matrix<T>& src, const Matrix<T>& index, Matrix<T> dst) {
  CheckIndexedCall(src, index, dst);
  const int64_t m = src.cols();
#pragma omp parallel for if (dst.size() > kParallelThreshold)
  for (int64_t i = 0; i < dst.rows(); ++i) {
    const T* s = src.data() + i * src.ld();
    const T* k = index.data() + i * index.ld();
    T* d = dst.data() + i * dst.ld();
    for (int64_t j = 0; j < dst.cols(); ++j) d[j] = s[CheckedIndex(k[j], m)];
  }
}

template <typename T>
void ScatterAddIndexed(const Matrix<T>& src, const Matrix<T>& index, T beta, Matrix<T> dst) {
  CheckIndexedCall(dst, index, src);
  const int64_t m = dst.cols();
  // One thread per row: repeated indices within a row are summed in the order of j.
#pragma omp parallel for if (dst.size() + src.size() > kParallelThreshold)
  for (int64_t i = 0; i < dst.rows(); ++i) {
    const T* s = src.data() + i * src.ld();
    const T* k = index.data() + i * index.ld();
    T* d = dst.data() + i * dst.ld();
    for (int64_t j = 0; j < m; ++j) d[j] = beta == T(0) ? T(0) : beta * d[j];  // NaN-safe 0
    for (int64_t j = 0; j < src.cols(); ++j) d[CheckedIndex(k[j], m)] += s[j];
  }
}

template <typename T>
void AvgPool(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> Y) {
  CheckPoolingCall(g, X, Y);
  const PoolShape s = MakePoolShape(g);
  const int64_t n = X.rows(), outputs = Y.cols();
#pragma omp parallel for collapse(2) if (Parallel(Y.size(), s))
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < outputs; ++o)
      Y.data()[i * Y.ld() + o] = AvgPoolAt(s, X.data() + i * X.ld(), o);
}

template <typename T>
void AvgPoolAdjoint(const WindowGeometry& g, const Matrix<T>& dY, T beta, Matrix<T> dX) {
  CheckPoolingCall(g, dX, dY);
  const PoolShape s = MakePoolShape(g);
  const int64_t n = dX.rows(), inputs = dX.cols();
#pragma omp parallel for collapse(2) if (Parallel(dX.size(), s))
  for (int64_t i = 0; i < n; ++i)
    for (int64_t e = 0; e < inputs; ++e) {
      T& x = dX.data()[i * dX.ld() + e];
      const T v = AvgPoolAdjointAt(s, dY.data() + i * dY.ld(), e);
      x = beta == T(0) ? v : v + beta * x;
    }
}

#define LETHE_INSTANTIATE(T)                                                               \
  template void MaxPool<T>(const WindowGeometry&, const Matrix<T>&, Matrix<T>, Matrix<T>); \
  template void GatherIndexed<T>(const Matrix<T>&, const Matrix<T>&, Matrix<T>);           \
  template void ScatterAddIndexed<T>(const Matrix<T>&, const Matrix<T>&, T, Matrix<T>);    \
  template void AvgPool<T>(const WindowGeometry&, const Matrix<T>&, Matrix<T>);            \
  template void AvgPoolAdjoint<T>(const WindowGeometry&, const Matrix<T>&, T, Matrix<T>);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe::kernels::cpu
