// CPU pooling: one loop over every output element (or, for the adjoint, every input
// element) evaluating kernels/pool_math.h, parallel over rows and elements when large.
// Each element is written by one thread from a sum in a fixed order, so results do not
// depend on the thread count.
#include "kernels/cpu/cpu_pool_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

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
  if (s.pad_h == 0 && s.pad_w == 0) {
    // Without padding every window lies inside its plane (out_h's definition), so all
    // kh·kw taps are summed in AvgPoolAt's order (a, then b) without its per-output
    // divisions and bounds: the same value, bit for bit, at a fraction of the cost (the
    // digits CNN's 2 × 2 pooling was 6% of its Hessian-vector product).
    const T taps = T(s.kernel_h * s.kernel_w);
    const int64_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w;
#pragma omp parallel for if (Parallel(Y.size(), s))
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < s.channels; ++c) {
        const T* xc = X.data() + i * X.ld() + c * H * W;
        T* yc = Y.data() + i * Y.ld() + c * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            const T* x0 = xc + oh * s.stride_h * W + ow * s.stride_w;
            T sum = T(0);
            for (int64_t a = 0; a < s.kernel_h; ++a)
              for (int64_t b = 0; b < s.kernel_w; ++b)
                sum += x0[a * s.dilation_h * W + b * s.dilation_w];
            yc[oh * OW + ow] = sum / taps;
          }
      }
    return;
  }
#pragma omp parallel for collapse(2) if (Parallel(Y.size(), s))
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < outputs; ++o)
      Y.data()[i * Y.ld() + o] = AvgPoolAt(s, X.data() + i * X.ld(), o);
}

// The windows holding each input row h (or column w) of the adjoint of average pooling,
// in AvgPoolAdjointAt's order (offset a ascending), computed once per call instead of once
// per input element: that function's integer divisions and modulos per element were a
// quarter of a small CNN's Hessian-vector product (perf, examples/digits/cnn.json).
struct AxisWindows {
  std::vector<int64_t> begin;  // windows of position x: at[begin[x]] … at[begin[x + 1] − 1]
  std::vector<int64_t> at;     // output index (oh or ow) of each window
};

AxisWindows WindowsOfAxis(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                          int64_t dilation) {
  AxisWindows a;
  a.begin.reserve(static_cast<size_t>(in + 1));
  const int64_t last = (out - 1) * stride;
  for (int64_t x = 0; x < in; ++x) {
    a.begin.push_back(static_cast<int64_t>(a.at.size()));
    int64_t t0, t1;
    WindowTaps(last - x - pad, dilation, last + 1, kernel, &t0, &t1);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t th = x + pad - t * dilation;
      if (th < 0 || th % stride != 0 || th / stride >= out) continue;
      a.at.push_back(th / stride);
    }
  }
  a.begin.push_back(static_cast<int64_t>(a.at.size()));
  return a;
}

bool AtMostOneWindow(const AxisWindows& a) {
  for (size_t x = 0; x + 1 < a.begin.size(); ++x)
    if (a.begin[x + 1] - a.begin[x] > 1) return false;
  return true;
}

// Each position's one window (its output index), or −1 where none holds it.
std::vector<int64_t> OnlyWindow(const AxisWindows& a) {
  std::vector<int64_t> only(a.begin.size() - 1, -1);
  for (size_t x = 0; x < only.size(); ++x)
    if (a.begin[x + 1] > a.begin[x]) only[x] = a.at[static_cast<size_t>(a.begin[x])];
  return only;
}

template <typename T>
void AvgPoolAdjoint(const WindowGeometry& g, const Matrix<T>& dY, T beta, Matrix<T> dX) {
  CheckPoolingCall(g, dX, dY);
  const PoolShape s = MakePoolShape(g);
  const AxisWindows rows = WindowsOfAxis(s.height, s.out_h, s.kernel_h, s.stride_h, s.pad_h,
                                         s.dilation_h);
  const AxisWindows cols = WindowsOfAxis(s.width, s.out_w, s.kernel_w, s.stride_w, s.pad_w,
                                         s.dilation_w);
  const T taps = T(s.kernel_h * s.kernel_w);
  const int64_t n = dX.rows();
  if (AtMostOneWindow(rows) && AtMostOneWindow(cols)) {
    // Windows that do not overlap (stride ≥ kernel, as the usual 2 × 2 pooling): each input
    // is in one window or none, and its sum is 0 + that one dy (or 0), as below, without
    // the loops over window lists (AvgPoolAdjoint was 9% of the digits CNN's
    // Hessian-vector product).
    const std::vector<int64_t> rh = OnlyWindow(rows), cw = OnlyWindow(cols);
#pragma omp parallel for if (Parallel(dX.size(), s))
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < s.channels; ++c) {
        const T* dyc = dY.data() + i * dY.ld() + c * s.out_h * s.out_w;
        T* xc = dX.data() + i * dX.ld() + c * s.height * s.width;
        for (int64_t h = 0; h < s.height; ++h) {
          T* xr = xc + h * s.width;
          if (rh[h] < 0) {
            for (int64_t w = 0; w < s.width; ++w) {
              const T v = T(0) / taps;
              xr[w] = beta == T(0) ? v : v + beta * xr[w];
            }
            continue;
          }
          const T* dyr = dyc + rh[h] * s.out_w;
          for (int64_t w = 0; w < s.width; ++w) {
            T sum = T(0);
            if (cw[w] >= 0) sum += dyr[cw[w]];
            const T v = sum / taps;
            xr[w] = beta == T(0) ? v : v + beta * xr[w];
          }
        }
      }
    return;
  }
  // Each input's sum runs over the same windows in the same order as AvgPoolAdjointAt's
  // (the CUDA backend's): the same value, bit for bit.
#pragma omp parallel for if (Parallel(dX.size(), s))
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < s.channels; ++c) {
      const T* dyc = dY.data() + i * dY.ld() + c * s.out_h * s.out_w;
      T* xc = dX.data() + i * dX.ld() + c * s.height * s.width;
      for (int64_t h = 0; h < s.height; ++h)
        for (int64_t w = 0; w < s.width; ++w) {
          T sum = T(0);
          for (int64_t a = rows.begin[h]; a < rows.begin[h + 1]; ++a)
            for (int64_t b = cols.begin[w]; b < cols.begin[w + 1]; ++b)
              sum += dyc[rows.at[a] * s.out_w + cols.at[b]];
          T& x = xc[h * s.width + w];
          const T v = sum / taps;
          x = beta == T(0) ? v : v + beta * x;
        }
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
