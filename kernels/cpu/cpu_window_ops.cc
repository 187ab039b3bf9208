// Im2Col, Col2Im and TransposeRows on the CPU (maths in kernels/backend.h).
//
// Im2Col is parallel over the rows of cols (one output position each: independent, and
// numerous even for one example). Col2Im is parallel over examples: each thread owns whole
// rows of dX and scatters into them in a fixed order, so no two threads touch one element
// and the result does not depend on the thread count. Inner loops run along a kernel row
// (kj), with the row's bounds test hoisted out of it.
#include "kernels/cpu/cpu_window_ops.h"

#include <Eigen/Core>
#include <algorithm>

namespace lethe::kernels::cpu {
namespace {

// Below this many elements moved a loop runs on one thread: these loops are memory-bound,
// and a parallel region's start and barrier cost more than small ones save (as
// cpu_backend.cc's kParallelThreshold).
constexpr int64_t kParallelThreshold = 1 << 18;

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace

template <typename T>
void Im2Col(const WindowGeometry& g, const Matrix<T>& X, Matrix<T> cols) {
  const int64_t count = CheckWindowShapes(g, X, cols);
  const int64_t ow_count = g.out_w(), positions = g.positions();
  const int64_t kh = g.kernel_h, kw = g.kernel_w, plane = g.height * g.width;
  const int64_t rows = count * positions;
#pragma omp parallel for schedule(static) if (cols.size() > kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r / positions, oh = (r % positions) / ow_count, ow = r % ow_count;
    const T* x = X.data() + i * X.ld();
    T* out = cols.data() + r * cols.ld();
    const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t ki = 0; ki < kh; ++ki, out += kw) {
        const int64_t h = h0 + ki * g.dilation_h;
        if (h < 0 || h >= g.height) {
          std::fill(out, out + kw, T(0));
          continue;
        }
        const T* x_row = x + c * plane + h * g.width;
        for (int64_t kj = 0; kj < kw; ++kj) {
          const int64_t w = w0 + kj * g.dilation_w;
          out[kj] = w >= 0 && w < g.width ? x_row[w] : T(0);
        }
      }
  }
}

template <typename T>
void Col2Im(const WindowGeometry& g, const Matrix<T>& cols, T beta, Matrix<T> dX) {
  const int64_t count = CheckWindowShapes(g, dX, cols);
  const int64_t ow_count = g.out_w(), positions = g.positions();
  const int64_t kh = g.kernel_h, kw = g.kernel_w, plane = g.height * g.width;
#pragma omp parallel for schedule(static) if (cols.size() > kParallelThreshold)
  for (int64_t i = 0; i < count; ++i) {
    T* x = dX.data() + i * dX.ld();
    if (beta == T(0))
      std::fill(x, x + g.in_size(), T(0));  // not read: NaN-safe, as the other ops
    else if (beta != T(1))
      for (int64_t e = 0; e < g.in_size(); ++e) x[e] *= beta;
    for (int64_t p = 0; p < positions; ++p) {
      const T* in = cols.data() + (i * positions + p) * cols.ld();
      const int64_t h0 = (p / ow_count) * g.stride_h - g.pad_h;
      const int64_t w0 = (p % ow_count) * g.stride_w - g.pad_w;
      for (int64_t c = 0; c < g.channels; ++c)
        for (int64_t ki = 0; ki < kh; ++ki, in += kw) {
          const int64_t h = h0 + ki * g.dilation_h;
          if (h < 0 || h >= g.height) continue;
          T* x_row = x + c * plane + h * g.width;
          for (int64_t kj = 0; kj < kw; ++kj) {
            const int64_t w = w0 + kj * g.dilation_w;
            if (w >= 0 && w < g.width) x_row[w] += in[kj];
          }
        }
    }
  }
}

template <typename T>
void TransposeRows(int64_t a, int64_t b, const Matrix<T>& src, Matrix<T> dst) {
  LETHE_CHECK(a >= 0 && b >= 0 && src.cols() == a * b && dst.rows() == src.rows() &&
                  dst.cols() == src.cols(),
              "TransposeRows ", a, "x", b, ": ", src.rows(), "x", src.cols(), " -> ", dst.rows(),
              "x", dst.cols());
  using Map = Eigen::Map<RowMajor<T>>;
  using ConstMap = Eigen::Map<const RowMajor<T>>;
#pragma omp parallel for schedule(static) if (src.size() > kParallelThreshold)
  for (int64_t r = 0; r < src.rows(); ++r)
    Map(dst.data() + r * dst.ld(), b, a) = ConstMap(src.data() + r * src.ld(), a, b).transpose();
}

template void Im2Col<float>(const WindowGeometry&, const Matrix<float>&, Matrix<float>);
template void Im2Col<double>(const WindowGeometry&, const Matrix<double>&, Matrix<double>);
template void Col2Im<float>(const WindowGeometry&, const Matrix<float>&, float, Matrix<float>);
template void Col2Im<double>(const WindowGeometry&, const Matrix<double>&, double, Matrix<double>);
template void TransposeRows<float>(int64_t, int64_t, const Matrix<float>&, Matrix<float>);
template void TransposeRows<double>(int64_t, int64_t, const Matrix<double>&, Matrix<double>);

}  // namespace lethe::kernels::cpu
