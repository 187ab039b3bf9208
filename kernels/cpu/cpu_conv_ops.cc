// Fused convolution products on the CPU, a block of examples at a time (maths in
// kernels/backend.h).
//
// Why fused. Composed from the window ops (kernels/conv_ops.cc), a batch's products go
// through its whole patch matrix, (count·P) × K, and two channels-last copies: for a
// 28 × 28 input and a 5 × 5 kernel the patches of a batch of 2048 are 236 MB in f64, written
// by Im2Col, read by the GEMM, and the products are transposed on the way in and out. All of
// it is memory traffic around GEMMs of K = 25. Here each thread takes whole examples and
// builds their patches transposed, X̃_iᵀ (K × P: in cache), so that every product is a plain
// GEMM on channels-first rows:
//   forward   Y_i (M × P) = W (M × K) · X̃_iᵀ (K × P)            (+ b per channel)
//   weight    dW (M × K) += D_i (M × P) · (X̃_iᵀ)ᵀ
//   input     dX̃_iᵀ (K × P) = Wᵀ D_i, then scattered back (Col2Im's adjoint loop)
// Row (c, ki, kj) of X̃_iᵀ holds x_i[c, h, w] at t = (oh, ow): for each oh one contiguous run
// of w = ow·stride − pad + kj·dilation, with the padding's zeros at its ends.
//
// Why blocks. One example's products are tiny on small images (8 × 8 digits: M = 6 or 12
// rows, P = 64 or 16 columns), and a GEMM call that small spends as much in its fixed costs
// (packing W again, partial register panels) as in its multiply-adds. A thread therefore
// takes G examples at once and lays them side by side, G·P columns:
//   forward   [Y_1 … Y_G] = W · [X̃_1ᵀ … X̃_Gᵀ]
//   weight    dW += [D_1 … D_G] · [X̃_1ᵀ … X̃_Gᵀ]ᵀ           (= Σ_i D_i X̃_i)
//   input     [dX̃_1ᵀ … dX̃_Gᵀ] = Wᵀ · [D_1 … D_G]
// Y and D are stored example after example ([Y_1; Y_2; …]), so the side-by-side rows go
// through a block buffer (M × G·P, a copy of the output's size: cheap next to the GEMM).
// G is as large as keeps the block's patches and rows, (K + M)·G·P values, within
// kBlockElements (in L2).
//
// Rounding. Each product differs from one example at a time by round-off only: the weight
// product sums over the block's G·P positions in one GEMM rather than example by example,
// and Eigen's GEMM kernel sums a dot product in an order that depends on where its column
// falls in the register panels (tests/kernels/test_conv_ops.cc holds blocks to one example
// at a time and to the composition at 1e-13 relative in f64).
//
// Determinism: forward and input products write disjoint examples. The weight product is
// summed per thread over a contiguous range of blocks (static schedule) and the threads'
// sums added in thread order: the same result for the same count and thread count, like
// Eigen's GEMM. Eigen runs single-threaded inside (the parallelism is over examples).
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

// A block's patches and channels-first rows together, in values (256 kB in f64).
constexpr int64_t kBlockElements = int64_t{1} << 15;

// dst[0, n) = src[0, n): the runs copied here are short (a row of a small image, one
// channel's P positions), where a call to memmove costs more than the copy.
// kN: n when known at compile time (0: the argument).
template <typename T, int kN = 0>
inline void CopyRun(const T* src, int64_t n, T* dst) {
  if (kN > 0) n = kN;
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) dst[k] = src[k];
}

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
// kW: g.width when known at compile time (0: g's).
template <typename T, int kW = 0>
void FillInterior(const WindowGeometry& g, const PaddedPlanes& pp, const T* x, T* padded) {
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t h = 0; h < g.height; ++h)
      CopyRun<T, kW>(x + (c * g.height + h) * g.width, g.width,
                     padded + c * pp.plane + (h + g.pad_h) * pp.width + g.pad_w);
}

// FillInterior with the width a constant when it is kOW (a "same" convolution's input is as
// wide as its output).
template <typename T, int kOW>
void FillInteriorAt(const WindowGeometry& g, const PaddedPlanes& pp, const T* x, T* padded) {
  if (kOW > 0 && g.width == kOW)
    FillInterior<T, kOW>(g, pp, x, padded);
  else
    FillInterior<T>(g, pp, x, padded);
}

// ct (K × P, rows `ld` apart) = X̃ᵀ of one example x ([C, H, W]); `padded` is a per-thread
// buffer of PaddedPlanes::size elements whose borders are zero.
// kOW: the output width when known at compile time (0: g's). The runs are as short as the
// output is wide, 4 or 8 values on the digits CNN, where a generic vector loop spends more
// in its prologue and epilogue than in the copy; with kOW the compiler emits the copy itself.
template <typename T, int kOW>
void PatchesTransposedAt(const WindowGeometry& g, const T* x, T* ct, int64_t ld, T* padded) {
  const int64_t OH = g.out_h(), OW = kOW > 0 ? kOW : g.out_w();
  const PaddedPlanes pp(g);
  const T* src = x;
  if (pp.needed(g)) {
    FillInteriorAt<T, kOW>(g, pp, x, padded);
    src = padded;
  }
  const int64_t sh = g.stride_h * pp.width, sw = g.stride_w;
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t ki = 0; ki < g.kernel_h; ++ki)
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        T* row = ct + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ld;
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

// dx ([C, H, W]) := beta·dx + the adjoint of PatchesTransposed applied to dct (K × P, rows
// `ld` apart). Each
// element receives beta·dx first and then its taps in (c, ki, kj, oh, ow) order, whether or
// not it goes through `padded` (PaddedPlanes::size elements, any contents).
template <typename T, int kOW>
void AddPatchesTransposedAt(const WindowGeometry& g, const T* dct, int64_t ld, T beta, T* dx,
                            T* padded) {
  const int64_t OH = g.out_h(), OW = kOW > 0 ? kOW : g.out_w();
  const PaddedPlanes pp(g);
  T* dst = dx;
  if (pp.needed(g)) {
    std::fill(padded, padded + pp.size(g), T(0));
    if (beta != T(0)) FillInteriorAt<T, kOW>(g, pp, dx, padded);
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
        const T* row = dct + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ld;
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
        if (kOW > 0 && g.width == kOW)
          CopyRun<T, kOW>(r, g.width, dx + (c * g.height + h) * g.width);
        else
          CopyRun(r, g.width, dx + (c * g.height + h) * g.width);
      }
}

// The same operations for every width; only the loop's trip count is a constant.
template <typename T>
void PatchesTransposed(const WindowGeometry& g, const T* x, T* ct, int64_t ld, T* padded) {
  const int64_t OW = g.stride_w == 1 ? g.out_w() : 0;
  if (OW == 4) return PatchesTransposedAt<T, 4>(g, x, ct, ld, padded);
  if (OW == 8) return PatchesTransposedAt<T, 8>(g, x, ct, ld, padded);
  PatchesTransposedAt<T, 0>(g, x, ct, ld, padded);
}

template <typename T>
void AddPatchesTransposed(const WindowGeometry& g, const T* dct, int64_t ld, T beta, T* dx,
                          T* padded) {
  const int64_t OW = g.stride_w == 1 ? g.out_w() : 0;
  if (OW == 4) return AddPatchesTransposedAt<T, 4>(g, dct, ld, beta, dx, padded);
  if (OW == 8) return AddPatchesTransposedAt<T, 8>(g, dct, ld, beta, dx, padded);
  AddPatchesTransposedAt<T, 0>(g, dct, ld, beta, dx, padded);
}

// Runs body(first, n, ct, rows, padded) for every block of n consecutive examples from
// `first`, in parallel over blocks when the work is large, with per-thread buffers: ct for
// the block's patches (K × n·P), rows for its channels-first rows side by side (M × n·P)
// and a PaddedPlanes buffer (zero-filled); Eigen single-threaded inside. Blocks are at most
// kBlockElements / ((K + M)·P) examples, and small enough that every thread gets one.
template <typename T, typename Body>
void ForEachBlock(const WindowGeometry& g, int64_t count, int64_t M, Body body) {
  const int64_t K = g.patch_size(), P = g.positions();
  const bool parallel = count > 1 && count * M * K * P > kParallelThreshold;
  const int64_t threads = parallel ? omp_get_max_threads() : 1;
  const int64_t G = std::max<int64_t>(
      1, std::min(kBlockElements / ((K + M) * P), (count + threads - 1) / threads));
  const int64_t blocks = (count + G - 1) / G;
  const int saved = Eigen::nbThreads();
  Eigen::setNbThreads(1);
#pragma omp parallel if (parallel)
  {
    std::vector<T> ct(static_cast<size_t>(K * G * P));
    std::vector<T> rows(static_cast<size_t>(M * G * P));
    std::vector<T> padded(static_cast<size_t>(PaddedPlanes(g).size(g)), T(0));
#pragma omp for schedule(static)
    for (int64_t k = 0; k < blocks; ++k) {
      const int64_t first = k * G;
      body(first, std::min(G, count - first), ct.data(), rows.data(), padded.data());
    }
  }
  Eigen::setNbThreads(saved);
}

// rows (M × n·P) = [D_first … D_first+n−1] side by side, D_i example i's M × P block of D.
template <typename T, int kP>
void GatherRowsAt(const Matrix<T>& D, int64_t first, int64_t n, int64_t M, int64_t P, T* rows) {
  for (int64_t j = 0; j < n; ++j) {
    const T* d = D.data() + (first + j) * D.ld();
    for (int64_t c = 0; c < M; ++c) CopyRun<T, kP>(d + c * P, P, rows + (c * n + j) * P);
  }
}

template <typename T>
void GatherRows(const Matrix<T>& D, int64_t first, int64_t n, int64_t M, int64_t P, T* rows) {
  if (P == 16) return GatherRowsAt<T, 16>(D, first, n, M, P, rows);
  if (P == 64) return GatherRowsAt<T, 64>(D, first, n, M, P, rows);
  GatherRowsAt<T, 0>(D, first, n, M, P, rows);
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
  ForEachBlock<T>(g, count, M, [&](int64_t first, int64_t n, T* ct, T* rows, T* padded) {
    const int64_t N = n * P;
    for (int64_t j = 0; j < n; ++j)
      PatchesTransposed(g, X.data() + (first + j) * X.ld(), ct + j * P, N, padded);
    Map<T>(rows, M, N).noalias() = w * ConstMap<T>(ct, K, N);
    // Scattered back per example as the per-example product would have written it: y, or
    // beta·y then + the product (Eigen's accumulating GEMM adds its sum last), then + b.
    for (int64_t j = 0; j < n; ++j) {
      T* y = Y.data() + (first + j) * Y.ld();
      for (int64_t c = 0; c < M; ++c) {
        T* yc = y + c * P;
        const T* r = rows + (c * n + j) * P;
        if (beta == T(0)) {
          CopyRun(r, P, yc);
        } else {
          if (beta != T(1))
            for (int64_t t = 0; t < P; ++t) yc[t] *= beta;
#pragma omp simd
          for (int64_t t = 0; t < P; ++t) yc[t] += r[t];
        }
        if (bias) {
          const T bc = bias[c];
#pragma omp simd
          for (int64_t t = 0; t < P; ++t) yc[t] += bc;
        }
      }
    }
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
  ForEachBlock<T>(g, count, M, [&](int64_t first, int64_t n, T* ct, T* rows, T* padded) {
    T* acc = partial.data() + omp_get_thread_num() * block;
    const int64_t N = n * P;
    for (int64_t j = 0; j < n; ++j)
      PatchesTransposed(g, X.data() + (first + j) * X.ld(), ct + j * P, N, padded);
    GatherRows(D, first, n, M, P, rows);
    Map<T>(acc, M, K).noalias() += ConstMap<T>(rows, M, N) * ConstMap<T>(ct, K, N).transpose();
    if (!db.empty())
      for (int64_t j = 0; j < n; ++j) {
        const ConstMap<T> d(D.data() + (first + j) * D.ld(), M, P);
        for (int64_t c = 0; c < M; ++c) acc[M * K + c] += d.row(c).sum();
      }
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
  ForEachBlock<T>(g, count, M, [&](int64_t first, int64_t n, T* ct, T* rows, T* padded) {
    const int64_t N = n * P;
    GatherRows(D, first, n, M, P, rows);
    Map<T>(ct, K, N).noalias() = w.transpose() * ConstMap<T>(rows, M, N);
    for (int64_t j = 0; j < n; ++j)
      AddPatchesTransposed(g, ct + j * P, N, beta, dX.data() + (first + j) * dX.ld(), padded);
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
