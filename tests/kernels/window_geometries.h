// The window geometries the window-operation tests run, conformance and brute force alike
// (test_backend_conformance.cc against test_window_ops.cc and test_pool_ops.cc): for
// convolutions each option off its default at least once, kernels that are not square,
// inputs that are not square, several channels, and a window that covers the whole input;
// for pooling (padding at most half the kernel) the cases listed above PoolingGeometries.
#pragma once

#include <string>
#include <vector>

#include "kernels/backend.h"

namespace lethe::kernels::testing {

struct NamedGeometry {
  std::string name;
  WindowGeometry g;
};

inline WindowGeometry Geometry(int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                               int64_t sh = 1, int64_t sw = 1, int64_t ph = 0, int64_t pw = 0,
                               int64_t dh = 1, int64_t dw = 1) {
  WindowGeometry g;
  g.channels = c, g.height = h, g.width = w;
  g.kernel_h = kh, g.kernel_w = kw;
  g.stride_h = sh, g.stride_w = sw;
  g.pad_h = ph, g.pad_w = pw;
  g.dilation_h = dh, g.dilation_w = dw;
  return g;
}

inline std::vector<NamedGeometry> WindowGeometries() {
  return {
      {"3x3 on 1x5x5", Geometry(1, 5, 5, 3, 3)},
      {"3x2 stride 2x1 padding 1x0 on 3x7x6", Geometry(3, 7, 6, 3, 2, 2, 1, 1, 0)},
      {"3x3 padding 2 dilation 2 on 2x8x9", Geometry(2, 8, 9, 3, 3, 1, 1, 2, 2, 2, 2)},
      {"2x4 stride 2x3 padding 1x2 dilation 2x1 on 2x6x10",
       Geometry(2, 6, 10, 2, 4, 2, 3, 1, 2, 2, 1)},
      // Stride larger than the kernel: some pixels are read by no window.
      {"1x1 stride 3 on 4x7x8", Geometry(4, 7, 8, 1, 1, 3, 3)},
      // One window over the whole input (a fully connected layer in disguise).
      {"4x3 on 2x4x3", Geometry(2, 4, 3, 4, 3)},
      // Padding as large as the kernel allows: windows wholly inside the padding.
      {"2x2 stride 2 padding 1 on 3x3x5", Geometry(3, 3, 5, 2, 2, 2, 2, 1, 1)},
  };
}

// Pooling geometries: non-overlapping windows with ragged edges, overlapping windows with
// padding, unequal kernel/stride/padding per axis, dilation, a 1 × 1 kernel, and a global
// window (kernel = H × W).
inline std::vector<WindowGeometry> PoolingGeometries() {
  return {
      {.channels = 3,
       .height = 7,
       .width = 9,
       .kernel_h = 2,
       .kernel_w = 2,
       .stride_h = 2,
       .stride_w = 2},
      {.channels = 2,
       .height = 8,
       .width = 6,
       .kernel_h = 3,
       .kernel_w = 3,
       .stride_h = 1,
       .stride_w = 1,
       .pad_h = 1,
       .pad_w = 1},
      {.channels = 2,
       .height = 9,
       .width = 7,
       .kernel_h = 3,
       .kernel_w = 2,
       .stride_h = 2,
       .stride_w = 1,
       .pad_h = 1,
       .pad_w = 0},
      {.channels = 3,
       .height = 10,
       .width = 11,
       .kernel_h = 4,
       .kernel_w = 3,
       .stride_h = 3,
       .stride_w = 2,
       .pad_h = 2,
       .pad_w = 1},
      {.channels = 1,
       .height = 10,
       .width = 10,
       .kernel_h = 3,
       .kernel_w = 3,
       .stride_h = 2,
       .stride_w = 2,
       .pad_h = 1,
       .pad_w = 1,
       .dilation_h = 2,
       .dilation_w = 2},
      {.channels = 2,
       .height = 5,
       .width = 4,
       .kernel_h = 1,
       .kernel_w = 1,
       .stride_h = 2,
       .stride_w = 1},
      {.channels = 4,
       .height = 5,
       .width = 6,
       .kernel_h = 5,
       .kernel_w = 6,
       .stride_h = 5,
       .stride_w = 6},
  };
}

}  // namespace lethe::kernels::testing
