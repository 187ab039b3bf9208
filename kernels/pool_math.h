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
    for (int64_t o = 0; o < out; ++o) {
      bool meets = false;
      for (int64_t a = 0; a < kernel && !meets; ++a) {
        const int64_t at = o * stride - pad + a * dilation;
        meets = at >= 0 && at < in;
      }
      if (!meets)
        return "window " + std::to_string(o) + " along the " + n + " lies entirely in the padding";
    }
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

// Output `out` (c·OH·OW + oh·OW + ow) of max pooling one example x: its value and the index
// in x of the first maximal element in row-major window order. The update rule is PyTorch's
// (val > max or val is NaN), so a NaN is chosen as PyTorch chooses it.
template <typename T>
LETHE_HD inline void MaxPoolAt(const PoolShape& s, const T* x, int64_t out, T* value,
                               int64_t* index) {
  const int64_t ow = out % s.out_w, oh = out / s.out_w % s.out_h, c = out / (s.out_w * s.out_h);
  const T* xc = x + c * s.height * s.width;
  T best = T(0);
  int64_t best_at = -1;  // PoolingGeometryProblem guarantees some element is in the window
  for (int64_t a = 0; a < s.kernel_h; ++a) {
    const int64_t h = oh * s.stride_h - s.pad_h + a * s.dilation_h;
    if (h < 0 || h >= s.height) continue;
    for (int64_t b = 0; b < s.kernel_w; ++b) {
      const int64_t w = ow * s.stride_w - s.pad_w + b * s.dilation_w;
      if (w < 0 || w >= s.width) continue;
      const T v = xc[h * s.width + w];
      if (best_at < 0 || v > best || v != v) best = v, best_at = h * s.width + w;
    }
  }
  *value = best;
  *index = c * s.height * s.width + best_at;
}

// Output `out` of average pooling one example x: the window's sum over kh·kw.
template <typename T>
LETHE_HD inline T AvgPoolAt(const PoolShape& s, const T* x, int64_t out) {
  const int64_t ow = out % s.out_w, oh = out / s.out_w % s.out_h, c = out / (s.out_w * s.out_h);
  const T* xc = x + c * s.height * s.width;
  T sum = T(0);
  for (int64_t a = 0; a < s.kernel_h; ++a) {
    const int64_t h = oh * s.stride_h - s.pad_h + a * s.dilation_h;
    if (h < 0 || h >= s.height) continue;
    for (int64_t b = 0; b < s.kernel_w; ++b) {
      const int64_t w = ow * s.stride_w - s.pad_w + b * s.dilation_w;
      if (w >= 0 && w < s.width) sum += xc[h * s.width + w];
    }
  }
  return sum / T(s.kernel_h * s.kernel_w);
}

// Input `in` (c·H·W + h·W + w) of the adjoint of average pooling: the sum of dy over the
// windows that contain (c, h, w), over kh·kw. Window (oh, ow) holds h at offset a when
// h = oh·sh − ph + a·dh, i.e. oh = (h + ph − a·dh) / sh where that divides exactly.
template <typename T>
LETHE_HD inline T AvgPoolAdjointAt(const PoolShape& s, const T* dy, int64_t in) {
  const int64_t w = in % s.width, h = in / s.width % s.height, c = in / (s.width * s.height);
  const T* dyc = dy + c * s.out_h * s.out_w;
  T sum = T(0);
  for (int64_t a = 0; a < s.kernel_h; ++a) {
    const int64_t th = h + s.pad_h - a * s.dilation_h;
    if (th < 0 || th % s.stride_h != 0 || th / s.stride_h >= s.out_h) continue;
    const int64_t oh = th / s.stride_h;
    for (int64_t b = 0; b < s.kernel_w; ++b) {
      const int64_t tw = w + s.pad_w - b * s.dilation_w;
      if (tw < 0 || tw % s.stride_w != 0 || tw / s.stride_w >= s.out_w) continue;
      sum += dyc[oh * s.out_w + tw / s.stride_w];
    }
  }
  return sum / T(s.kernel_h * s.kernel_w);
}

}  // namespace lethe::kernels
