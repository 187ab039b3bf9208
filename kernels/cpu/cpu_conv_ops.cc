// Fused convolution products on the CPU, one example at a time (maths in kernels/backend.h).
//
// Why fused. Composed from the window ops (kernels/conv_ops.cc), a batch's products go
// through its whole patch matrix, (count·P) × K, and two channels-last copies: for a
// 28 × 28 input and a 5 × 5 kernel the patches of a batch of 2048 are 236 MB in f64, written
// by Im2Col, read by the GEMM, and the products are transposed on the way in and out. All of
// it is memory traffic around GEMMs of K = 25. Here each thread takes whole examples and
// builds one example's patches transposed, X̃_iᵀ (K × P, 1.2 kB to a few hundred kB: in cache),
// so that every product is a plain GEMM straight on the channels-first rows:
//   forward   Y_i (M × P) = W (M × K) · X̃_iᵀ (K × P)            (+ b per channel)
//   weight    dW (M × K) += D_i (M × P) · (X̃_iᵀ)ᵀ
//   input     dX̃_iᵀ (K × P) = Wᵀ D_i, then scattered back (Col2Im's adjoint loop)
// Row (c, ki, kj) of X̃_iᵀ holds x_i[c, h, w] at t = (oh, ow): for each oh one contiguous run
// of w = ow·stride − pad + kj·dilation, with the padding's zeros at its ends.
//
// Determinism: forward and input products write disjoint examples. The weight product is
// summed per thread over a contiguous block of examples (static schedule) and the threads'
// sums added in thread order: the same result for the same thread count, like Eigen's GEMM.
// Eigen runs single-threaded inside (the parallelism is over examples).
#include "kernels/cpu/cpu_conv_ops.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <vector>

namespace lethe::kernels::cpu {
namespace {

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using Map = Eigen::Map<RowMajor<T>>;
template <typename T>
using ConstMap = Eigen::Map<const RowMajor<T>>;
template <typename T>
using StridedMap = Eigen::Map<RowMajor<T>, 0, Eigen::OuterStride<>>;

// Below this many multiply-adds a call runs on one thread (a parallel region's start and
// barrier would cost more).
constexpr int64_t kParallelThreshold = int64_t{1} << 20;

// One example's channels zero-padded: C planes of (H + 2·pad_h) × (W + 2·pad_w), so that
// every tap of every window is inside a plane and a row of X̃ᵀ is a plain strided copy (no
// bounds per run: the runs are as short as the output is wide, 8 values on a small image).
struct PaddedPlanes {
  int64_t height, width, plane;
  explicit PaddedPlanes(const WindowGeometry& g)
      : height(g.height + 2 * g.pad_h), width(g.width + 2 * g.pad_w), plane(height * width) {}
  bool needed(const WindowGeometry& g) const { return g.pad_h != 0 || g.pad_w != 0; }
  int64_t size(const WindowGeometry& g) const { return needed(g) ? g.channels * plane : 0; }
};

// padded's interiors = x ([C, H, W]); its borders are left as they are (zero).
template <typename T>
void FillInterior(const WindowGeometry& g, const PaddedPlanes& pp, const T* x, T* padded) {
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t h = 0; h < g.height; ++h)
      std::copy(x + (c * g.height + h) * g.width, x + (c * g.height + h + 1) * g.width,
                padded + c * pp.plane + (h + g.pad_h) * pp.width + g.pad_w);
}

// ct (K × P) = X̃ᵀ of one example x ([C, H, W]); `padded` is a per-thread buffer of
// PaddedPlanes::size elements whose borders are zero.
template <typename T>
void PatchesTransposed(const WindowGeometry& g, const T* x, T* ct, T* padded) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW;
  const PaddedPlanes pp(g);
  const T* src = x;
  if (pp.needed(g)) {
    FillInterior(g, pp, x, padded);
    src = padded;
  }
  const int64_t sh = g.stride_h * pp.width, sw = g.stride_w;
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t ki = 0; ki < g.kernel_h; ++ki)
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        T* row = ct + ((c * g.kernel_h + ki) * g.kernel_w + kj) * P;
        const T* tap = src + c * pp.plane + ki * g.dilation_h * pp.width + kj * g.dilation_w;
        for (int64_t oh = 0; oh < OH; ++oh) {
          T* out = row + oh * OW;
          const T* in = tap + oh * sh;
          if (sw == 1) {
#pragma omp simd
            for (int64_t ow = 0; ow < OW; ++ow) out[ow] = in[ow];
          } else {
            for (int64_t ow = 0; ow < OW; ++ow) out[ow] = in[ow * sw];
          }
        }
      }
}

// dx ([C, H, W]) := beta·dx + the adjoint of PatchesTransposed applied to dct (K × P). Each
// element receives beta·dx first and then its taps in (c, ki, kj, oh, ow) order, whether or
// not it goes through `padded` (PaddedPlanes::size elements, any contents).
template <typename T>
void AddPatchesTransposed(const WindowGeometry& g, const T* dct, T beta, T* dx, T* padded) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW;
  const PaddedPlanes pp(g);
  T* dst = dx;
  if (pp.needed(g)) {
    std::fill(padded, padded + pp.size(g), T(0));
    if (beta != T(0)) FillInterior(g, pp, dx, padded);
    dst = padded;
  } else if (beta == T(0)) {
    std::fill(dx, dx + g.in_size(), T(0));
  }
  if (beta != T(0) && beta != T(1))
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t h = 0; h < g.height; ++h) {
        T* r = dst + c * pp.plane + (h + g.pad_h) * pp.width + g.pad_w;
        for (int64_t w = 0; w < g.width; ++w) r[w] *= beta;
      }
  const int64_t sh = g.stride_h * pp.width, sw = g.stride_w;
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t ki = 0; ki < g.kernel_h; ++ki)
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const T* row = dct + ((c * g.kernel_h + ki) * g.kernel_w + kj) * P;
        T* tap = dst + c * pp.plane + ki * g.dilation_h * pp.width + kj * g.dilation_w;
        for (int64_t oh = 0; oh < OH; ++oh) {
          T* out = tap + oh * sh;
          const T* in = row + oh * OW;
          if (sw == 1) {
#pragma omp simd
            for (int64_t ow = 0; ow < OW; ++ow) out[ow] += in[ow];
          } else {
            for (int64_t ow = 0; ow < OW; ++ow) out[ow * sw] += in[ow];
          }
        }
      }
  if (pp.needed(g))
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t h = 0; h < g.height; ++h) {
        const T* r = padded + c * pp.plane + (h + g.pad_h) * pp.width + g.pad_w;
        std::copy(r, r + g.width, dx + (c * g.height + h) * g.width);
      }
}

// Runs body(i, ct, padded) for every example i, in parallel over examples when the work is
// large, with a K × P buffer and a PaddedPlanes buffer (zero-filled) per thread; Eigen
// single-threaded inside.
template <typename T, typename Body>
void ForEachExample(const WindowGeometry& g, int64_t count, int64_t M, Body body) {
  const int64_t KP = g.patch_size() * g.positions();
  const bool parallel = count > 1 && count * M * KP > kParallelThreshold;
  const int saved = Eigen::nbThreads();
  Eigen::setNbThreads(1);
#pragma omp parallel if (parallel)
  {
    std::vector<T> ct(static_cast<size_t>(KP));
    std::vector<T> padded(static_cast<size_t>(PaddedPlanes(g).size(g)), T(0));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < count; ++i) body(i, ct.data(), padded.data());
  }
  Eigen::setNbThreads(saved);
}

// CheckWindowShapes' checks of g and of an image matrix (count × C·H·W), without a patch matrix.
template <typename T>
void CheckGeometry(const WindowGeometry& g, const Matrix<T>& images) {
  const int64_t rows = images.rows() * g.positions();
  CheckWindowShapes(g, images,
                    Matrix<T>(nullptr, nullptr, rows, g.patch_size(), g.patch_size(), DeviceKind::kCpu));
}

}  // namespace

template <typename T>
void ConvForward(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& W,
                 const Matrix<T>& b, T beta, Matrix<T> Y) {
  CheckGeometry(g, X);
  const int64_t count = X.rows(), M = W.rows(), K = g.patch_size(), P = g.positions();
  LETHE_CHECK(W.cols() == K && Y.rows() == count && Y.cols() == M * P &&
                  (b.empty() || (b.rows() == 1 && b.cols() == M)),
              "ConvForward: W ", W.rows(), "x", W.cols(), ", Y ", Y.rows(), "x", Y.cols());
  const StridedMap<T> w(W.data(), M, K, Eigen::OuterStride<>(W.ld()));
  const T* bias = b.empty() ? nullptr : b.data();
  ForEachExample<T>(g, count, M, [&](int64_t i, T* ct, T* padded) {
    PatchesTransposed(g, X.data() + i * X.ld(), ct, padded);
    Map<T> y(Y.data() + i * Y.ld(), M, P);
    const ConstMap<T> patches(ct, K, P);
    if (beta == T(0)) {
      y.noalias() = w * patches;
    } else {
      if (beta != T(1)) y *= beta;
      y.noalias() += w * patches;
    }
    if (bias)
      for (int64_t c = 0; c < M; ++c) y.row(c).array() += bias[c];
  });
}

template <typename T>
void ConvWeightGradient(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& D, T beta,
                        Matrix<T> dW, Matrix<T> db) {
  CheckGeometry(g, X);
  const int64_t count = X.rows(), M = dW.rows(), K = g.patch_size(), P = g.positions();
  LETHE_CHECK(dW.cols() == K && D.rows() == count && D.cols() == M * P &&
                  (db.empty() || (db.rows() == 1 && db.cols() == M)),
              "ConvWeightGradient: D ", D.rows(), "x", D.cols(), ", dW ", dW.rows(), "x",
              dW.cols());
  // One M × K (+ M) sum per thread, zeroed; threads beyond the first used only when parallel.
  const int threads = omp_get_max_threads();
  const int64_t block = M * K + M;
  std::vector<T> partial(static_cast<size_t>(threads * block), T(0));
  ForEachExample<T>(g, count, M, [&](int64_t i, T* ct, T* padded) {
    T* acc = partial.data() + omp_get_thread_num() * block;
    PatchesTransposed(g, X.data() + i * X.ld(), ct, padded);
    const ConstMap<T> d(D.data() + i * D.ld(), M, P);
    Map<T>(acc, M, K).noalias() += d * ConstMap<T>(ct, K, P).transpose();
    if (!db.empty())
      for (int64_t c = 0; c < M; ++c) acc[M * K + c] += d.row(c).sum();
  });
  StridedMap<T> dw(dW.data(), M, K, Eigen::OuterStride<>(dW.ld()));
  if (beta == T(0))
    dw.setZero();
  else if (beta != T(1))
    dw *= beta;
  for (int t = 0; t < threads; ++t) dw += ConstMap<T>(partial.data() + t * block, M, K);
  if (db.empty()) return;
  for (int64_t c = 0; c < M; ++c) {
    T sum = beta == T(0) ? T(0) : beta * db.data()[c];
    for (int t = 0; t < threads; ++t) sum += partial[t * block + M * K + c];
    db.data()[c] = sum;
  }
}

template <typename T>
void ConvInputGradient(const WindowGeometry& g, const Matrix<T>& D, const Matrix<T>& W, T beta,
                       Matrix<T> dX) {
  CheckGeometry(g, dX);
  const int64_t count = D.rows(), M = W.rows(), K = g.patch_size(), P = g.positions();
  LETHE_CHECK(W.cols() == K && D.cols() == M * P && dX.rows() == count,
              "ConvInputGradient: D ", D.rows(), "x", D.cols(), ", W ", W.rows(), "x", W.cols());
  const StridedMap<T> w(W.data(), M, K, Eigen::OuterStride<>(W.ld()));
  ForEachExample<T>(g, count, M, [&](int64_t i, T* ct, T* padded) {
    Map<T>(ct, K, P).noalias() = w.transpose() * ConstMap<T>(D.data() + i * D.ld(), M, P);
    AddPatchesTransposed(g, ct, beta, dX.data() + i * dX.ld(), padded);
  });
}

#define LETHE_INSTANTIATE(T)                                                                   \
  template void ConvForward<T>(const WindowGeometry&, const Matrix<T>&, const Matrix<T>&,      \
                               const Matrix<T>&, T, Matrix<T>);                                \
  template void ConvWeightGradient<T>(const WindowGeometry&, const Matrix<T>&, const Matrix<T>&, \
                                      T, Matrix<T>, Matrix<T>);                                \
  template void ConvInputGradient<T>(const WindowGeometry&, const Matrix<T>&, const Matrix<T>&, \
                                     T, Matrix<T>);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe::kernels::cpu
