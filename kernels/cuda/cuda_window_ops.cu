// Im2Col, Col2Im and TransposeRows on the GPU (maths in kernels/backend.h). One thread per
// output element in a grid-stride loop, as cuda_backend.cu's elementwise kernels:
//   Im2Col:        per element of cols (writes coalesced along a patch row);
//   Col2Im:        per element of dX, which *gathers* the cols entries of the windows that
//                  cover it, in the fixed order (ki, kj) ascending. No atomics, so the sum's
//                  order, and its bits, never depend on scheduling (a scatter with
//                  atomicAdd would be the obvious alternative, and nondeterministic);
//   TransposeRows: per element of dst.
#include <algorithm>

#include "kernels/cuda/launch.h"
#include "kernels/cuda/window_ops.h"

namespace lethe::kernels::cuda {
namespace {

template <typename T>
void CheckOnDevice(const Matrix<T>& m) {
  LETHE_CHECK(m.device() == DeviceKind::kCuda || m.empty(),
              "a host matrix was passed to the CUDA backend");
}

// cols[r, k] for r = (i·OH + oh)·OW + ow, k = (c·kh + ki)·kw + kj.
template <typename T>
struct Im2ColOp {
  const T* x;
  T* cols;
  int64_t ldx, ldc;
  WindowGeometry g;
  int64_t positions, out_w;
  __device__ void operator()(int64_t r, int64_t k) const {
    const int64_t i = r / positions, p = r % positions;
    const int64_t c = k / (g.kernel_h * g.kernel_w), tap = k % (g.kernel_h * g.kernel_w);
    const int64_t h = (p / out_w) * g.stride_h - g.pad_h + (tap / g.kernel_w) * g.dilation_h;
    const int64_t w = (p % out_w) * g.stride_w - g.pad_w + (tap % g.kernel_w) * g.dilation_w;
    const bool inside = h >= 0 && h < g.height && w >= 0 && w < g.width;
    cols[r * ldc + k] = inside ? x[i * ldx + (c * g.height + h) * g.width + w] : T(0);
  }
};

// dX[i, (c·H + h)·W + w] = beta · dX + Σ_{ki, kj} cols[(i·OH + oh)·OW + ow, (c·kh + ki)·kw + kj]
// over the taps whose oh = (h + pad_h − ki·dil_h) / stride_h is whole and in [0, OH), and
// the same for ow.
template <typename T>
struct Col2ImOp {
  const T* cols;
  T* dx;
  int64_t ldc, ldx;
  WindowGeometry g;
  int64_t positions, out_h, out_w;
  T beta;
  __device__ void operator()(int64_t i, int64_t e) const {
    const int64_t c = e / (g.height * g.width), h = (e / g.width) % g.height, w = e % g.width;
    T sum = T(0);
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      const int64_t sh = h + g.pad_h - ki * g.dilation_h;  // = oh · stride_h
      if (sh < 0) break;                                   // sh only decreases with ki
      if (sh % g.stride_h != 0 || sh / g.stride_h >= out_h) continue;
      const int64_t oh = sh / g.stride_h;
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const int64_t sw = w + g.pad_w - kj * g.dilation_w;  // = ow · stride_w
        if (sw < 0) break;
        if (sw % g.stride_w != 0 || sw / g.stride_w >= out_w) continue;
        const int64_t ow = sw / g.stride_w;
        const int64_t r = i * positions + oh * out_w + ow;
        sum += cols[r * ldc + (c * g.kernel_h + ki) * g.kernel_w + kj];
      }
    }
    T* out = dx + i * ldx + e;
    *out = beta == T(0) ? sum : sum + beta * *out;  // beta = 0: dX is not read (NaN-safe)
  }
};

// dst[r, q·a + p] = src[r, p·b + q].
template <typename T>
struct TransposeRowsOp {
  const T* src;
  T* dst;
  int64_t lds, ldd, a, b;
  __device__ void operator()(int64_t r, int64_t j) const {
    dst[r * ldd + j] = src[r * lds + (j % a) * b + j / a];
  }
};

}  // namespace

template <typename T>
void Im2Col(CudaContext& context, const WindowGeometry& g, const Matrix<T>& X, Matrix<T> cols) {
  CheckWindowShapes(g, X, cols);
  CheckOnDevice(X);
  CheckOnDevice(cols);
  LaunchElements(
      context.stream(), cols.rows(), cols.cols(),
      Im2ColOp<T>{X.data(), cols.data(), X.ld(), cols.ld(), g, g.positions(), g.out_w()});
}

template <typename T>
void Col2Im(CudaContext& context, const WindowGeometry& g, const Matrix<T>& cols, T beta,
            Matrix<T> dX) {
  CheckWindowShapes(g, dX, cols);
  CheckOnDevice(dX);
  CheckOnDevice(cols);
  LaunchElements(context.stream(), dX.rows(), dX.cols(),
                 Col2ImOp<T>{cols.data(), dX.data(), cols.ld(), dX.ld(), g, g.positions(),
                             g.out_h(), g.out_w(), beta});
}

template <typename T>
void TransposeRows(CudaContext& context, int64_t a, int64_t b, const Matrix<T>& src,
                   Matrix<T> dst) {
  LETHE_CHECK(a >= 0 && b >= 0 && src.cols() == a * b && dst.rows() == src.rows() &&
                  dst.cols() == src.cols(),
              "TransposeRows ", a, "x", b, ": ", src.rows(), "x", src.cols(), " -> ", dst.rows(),
              "x", dst.cols());
  CheckOnDevice(src);
  CheckOnDevice(dst);
  LaunchElements(context.stream(), dst.rows(), dst.cols(),
                 TransposeRowsOp<T>{src.data(), dst.data(), src.ld(), dst.ld(), a, b});
}

template void Im2Col<float>(CudaContext&, const WindowGeometry&, const Matrix<float>&,
                            Matrix<float>);
template void Im2Col<double>(CudaContext&, const WindowGeometry&, const Matrix<double>&,
                             Matrix<double>);
template void Col2Im<float>(CudaContext&, const WindowGeometry&, const Matrix<float>&, float,
                            Matrix<float>);
template void Col2Im<double>(CudaContext&, const WindowGeometry&, const Matrix<double>&, double,
                             Matrix<double>);
template void TransposeRows<float>(CudaContext&, int64_t, int64_t, const Matrix<float>&,
                                   Matrix<float>);
template void TransposeRows<double>(CudaContext&, int64_t, int64_t, const Matrix<double>&,
                                    Matrix<double>);

}  // namespace lethe::kernels::cuda
