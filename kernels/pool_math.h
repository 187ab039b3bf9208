// Pooling's per-element formulas (kernels/backend.h states the maths), written once for the
// CPU backend and, with __host__ __device__, the CUDA kernels, so both devices choose the
// same maxima and sum the same windows in the same order; and the checks both backends make
// of a pooling call.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "kernels/backend.h"
#include "kernels/scalar_math.h"  // LETHE_HD

namespace lethe::kernels {

// Indices stored as T (max pooling's argmax) are exact integers up to 2^digits: 2^24 in
// f32, 2^53 in f64. A row longer than this could not name all its elements.
template <typename T>
constexpr int64_t kExactIndexLimit = int64_t{1} << std::numeric_limits<T>::digits;

// The offsets a ∈ [0, kernel) at which a window's taps base + a·step (step ≥ 1) fall in
// [0, limit): [*first, *end), empty when *first ≥ *end. The pooling loops below visit only
// these, in ascending order: the same taps in the same order as testing every offset (so
// the same maxima and the same sums, bit for bit), at a cost bounded by the input rather
// than the kernel (a kernel of 2^31 with padding 2^30 is a valid window on a small image;
// looping over its 2^62 offsets never finished).
LETHE_HD inline void WindowTaps(int64_t base, int64_t step, int64_t limit, int64_t kernel,
                                int64_t* first, int64_t* end) {
  *first = base >= 0 ? 0 : (-base + step - 1) / step;
  *end = base >= limit ? 0 : (limit - 1 - base) / step + 1;
  if (*end > kernel) *end = kernel;
}

// "" when g is a pooling geometry, else why not (the layers turn this into the user's
// error; the backends check it). PyTorch's rules: kernel, stride, dilation ≥ 1, padding ≥ 0
// and at most half the kernel, and a non-empty output. Beyond them, every window must meet
// the input (with dilation a window can straddle a small input without touching it), so
// that every maximum has an element to choose.
inline std::string PoolingGeometryProblem(const WindowGeometry& g) {
  auto axis = [](const char* name, int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                 int64_t dilation) -> std::string {
    const std::string n(name);
    if (in < 1) return n + " = " + std::to_string(in) + ": must be >= 1";
    if (kernel < 1) return "kernel " + n + " = " + std::to_string(kernel) + ": must be >= 1";
    if (stride < 1) return "stride " + n + " = " + std::to_string(stride) + ": must be >= 1";
    if (dilation < 1) return "dilation " + n + " = " + std::to_string(dilation) + ": must be >= 1";
    if (pad < 0 || 2 * pad > kernel)
      return "padding " + n + " = " + std::to_string(pad) +
             ": must be between 0 and half the kernel (" + std::to_string(kernel) + ")";
    const int64_t span = dilation * (kernel - 1) + 1;
    if (in + 2 * pad < span)
      return "the " + n + " of the window (" + std::to_string(span) +
             ") exceeds the padded input's (" + std::to_string(in + 2 * pad) + ")";
    const int64_t out = (in + 2 * pad - span) / stride + 1;
    auto misses = [&](int64_t o) {
      int64_t first, end;
      WindowTaps(o * stride - pad, dilation, in, kernel, &first, &end);
      return first >= end;
    };
    // The first window that lies entirely in the padding, in O(log out) tests, not
    // O(out · kernel) (a 2^31-wide kernel with padding 2^30 is a valid PyTorch window on a
    // small image, and testing its offsets one by one never finished). When kernel = 1 or
    // in ≥ dilation, a window meets the input exactly when its span [s, s + dilation·(kernel
    // − 1)] overlaps [0, in) (the first tap ≥ 0 is then s ≥ 0, or below dilation ≤ in), and
    // the spans move right with o: the windows that miss are a prefix and a suffix, so window
    // 0 is tested, then the suffix searched by bisection. Otherwise (a dilated kernel over an
    // input narrower than its dilation, where out is tiny) every window is tested.
    int64_t missing = -1;
    if (kernel == 1 || in >= dilation) {
      if (misses(0)) {
        missing = 0;
      } else if (misses(out - 1)) {
        int64_t lo = 0, hi = out - 1;  // lo meets, hi misses
        while (hi - lo > 1) {
          const int64_t mid = lo + (hi - lo) / 2;
          (misses(mid) ? hi : lo) = mid;
        }
        missing = hi;
      }
    } else {
      for (int64_t o = 0; o < out && missing < 0; ++o)
        if (misses(o)) missing = o;
    }
    if (missing >= 0)
      return "window " + std::to_string(missing) + " along the " + n + " lies entirely in the padding";
    return "";
  };
  if (g.channels < 1) return "channels = " + std::to_string(g.channels) + ": must be >= 1";
  std::string problem = axis("height", g.height, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h);
  if (problem.empty())
    problem = axis("width", g.width, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
  return problem;
}

// WindowGeometry flattened for device code (its methods are host functions).
struct PoolShape {
  int64_t channels, height, width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t out_h, out_w;
  LETHE_HD int64_t in_size() const { return channels * height * width; }
  LETHE_HD int64_t out_size() const { return channels * out_h * out_w; }
};

inline PoolShape MakePoolShape(const WindowGeometry& g) {
  return {g.channels, g.height, g.width,      g.kernel_h,   g.kernel_w, g.stride_h, g.stride_w,
          g.pad_h,    g.pad_w,  g.dilation_h, g.dilation_w, g.out_h(),  g.out_w()};
}

// Checks a pooling call (an internal invariant: the layers validate the user's geometry and
// shapes first): g a pooling geometry, `in` n × C·H·W and `out` n × C·OH·OW.
template <typename T>
void CheckPoolingCall(const WindowGeometry& g, const Matrix<T>& in, const Matrix<T>& out) {
  const std::string problem = PoolingGeometryProblem(g);
  LETHE_CHECK(problem.empty(), "pooling geometry: ", problem);
  LETHE_CHECK(in.rows() == out.rows() && in.cols() == g.in_size() &&
                  out.cols() == g.channels * g.positions(),
              "pooling ", in.rows(), "x", in.cols(), " -> ", out.rows(), "x", out.cols(), " for [",
              g.channels, ", ", g.height, ", ", g.width, "] -> [", g.channels, ", ", g.out_h(),
              ", ", g.out_w(), "]");
}

// Checks an indexed gather or scatter: `many` (n × m) is the side the indices point into,
// `few` and `index` (n × k) the side they are read along.
template <typename T>
void CheckIndexedCall(const Matrix<T>& many, const Matrix<T>& index, const Matrix<T>& few) {
  LETHE_CHECK(index.rows() == few.rows() && index.cols() == few.cols() && many.rows() == few.rows(),
              "indexed ", many.rows(), "x", many.cols(), " <-> ", few.rows(), "x", few.cols(),
              " by ", index.rows(), "x", index.cols());
  LETHE_CHECK(many.cols() <= kExactIndexLimit<T>, "rows of ", many.cols(),
              " elements cannot be indexed exactly in this precision");
}

// Output `out`'s window (out = c·OH·OW + oh·OW + ow): its channel, where its first tap falls
// in the input (h0, w0; in the padding when negative), and the taps inside the input, kernel
// rows [a0, a1) and columns [b0, b1) (WindowTaps).
struct OutputWindow {
  int64_t c, h0, w0, a0, a1, b0, b1;
};
LETHE_HD inline OutputWindow WindowOf(const PoolShape& s, int64_t out) {
  OutputWindow win;
  const int64_t ow = out % s.out_w, oh = out / s.out_w % s.out_h;
  win.c = out / (s.out_w * s.out_h);
  win.h0 = oh * s.stride_h - s.pad_h;
  win.w0 = ow * s.stride_w - s.pad_w;
  WindowTaps(win.h0, s.dilation_h, s.height, s.kernel_h, &win.a0, &win.a1);
  WindowTaps(win.w0, s.dilation_w, s.width, s.kernel_w, &win.b0, &win.b1);
  return win;
}

// Output `out` (c·OH·OW + oh·OW + ow) of max pooling one example x: its value and the index
// in x of the first maximal element in row-major window order. The update rule is PyTorch's
// (val > max or val is NaN), so a NaN is chosen as PyTorch chooses it.
template <typename T>
LETHE_HD inline void MaxPoolAt(const PoolShape& s, const T* x, int64_t out, T* value,
                               int64_t* index) {
  const OutputWindow win = WindowOf(s, out);
  const T* xc = x + win.c * s.height * s.width;
  T best = T(0);
  int64_t best_at = -1;  // PoolingGeometryProblem guarantees some element is in the window
  for (int64_t a = win.a0; a < win.a1; ++a) {
    const int64_t h = win.h0 + a * s.dilation_h;
    for (int64_t b = win.b0; b < win.b1; ++b) {
      const int64_t w = win.w0 + b * s.dilation_w;
      const T v = xc[h * s.width + w];
      if (best_at < 0 || v > best || v != v) best = v, best_at = h * s.width + w;
    }
  }
  *value = best;
  *index = win.c * s.height * s.width + best_at;
}

// Output `out` of average pooling one example x: the window's sum over kh·kw.
template <typename T>
LETHE_HD inline T AvgPoolAt(const PoolShape& s, const T* x, int64_t out) {
  const OutputWindow win = WindowOf(s, out);
  const T* xc = x + win.c * s.height * s.width;
  T sum = T(0);
  for (int64_t a = win.a0; a < win.a1; ++a)
    for (int64_t b = win.b0; b < win.b1; ++b)
      sum += xc[(win.h0 + a * s.dilation_h) * s.width + win.w0 + b * s.dilation_w];
  return sum / T(s.kernel_h * s.kernel_w);
}

// Input `in` (c·H·W + h·W + w) of the adjoint of average pooling: the sum of dy over the
// windows that contain (c, h, w), over kh·kw. Window (oh, ow) holds h at offset a when
// h = oh·sh − ph + a·dh, i.e. oh = (h + ph − a·dh) / sh where that divides exactly. Only the
// offsets with 0 ≤ h + ph − a·dh ≤ (OH − 1)·sh can (WindowTaps, on (OH − 1)·sh − h − ph + a·dh).
template <typename T>
LETHE_HD inline T AvgPoolAdjointAt(const PoolShape& s, const T* dy, int64_t in) {
  const int64_t w = in % s.width, h = in / s.width % s.height, c = in / (s.width * s.height);
  const T* dyc = dy + c * s.out_h * s.out_w;
  const int64_t last_h = (s.out_h - 1) * s.stride_h, last_w = (s.out_w - 1) * s.stride_w;
  int64_t a0, a1, b0, b1;
  WindowTaps(last_h - h - s.pad_h, s.dilation_h, last_h + 1, s.kernel_h, &a0, &a1);
  WindowTaps(last_w - w - s.pad_w, s.dilation_w, last_w + 1, s.kernel_w, &b0, &b1);
  T sum = T(0);
  for (int64_t a = a0; a < a1; ++a) {
    const int64_t th = h + s.pad_h - a * s.dilation_h;
    if (th < 0 || th % s.stride_h != 0 || th / s.stride_h >= s.out_h) continue;
    const int64_t oh = th / s.stride_h;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t tw = w + s.pad_w - b * s.dilation_w;
      if (tw < 0 || tw % s.stride_w != 0 || tw / s.stride_w >= s.out_w) continue;
      sum += dyc[oh * s.out_w + tw / s.stride_w];
    }
  }
  return sum / T(s.kernel_h * s.kernel_w);
}

}  // namespace lethe::kernels
