// The window operations on the CPU in f64 against their definitions, written out as plain
// loops here (the conformance suite then holds every other backend to the CPU):
//   - a convolution as Im2Col, one GEMM and TransposeRows equals the 7-loop convolution;
//   - Col2Im is Im2Col's adjoint, ⟨Im2Col(x), c⟩ = ⟨x, Col2Im(c)⟩, and equals its scatter;
//   - TransposeRows is the per-row transpose;
//   - a few values small enough to check by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/window_geometries.h"

namespace lethe::kernels::testing {
namespace {

// Sums of a few dozen products in another order than the loops below: a few ulp of the
// largest term, far below what a wrong index (an O(1) change) would give.
constexpr double kSumOrderTolerance = 1e-13;

std::vector<double> RandomValues(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1, 1);
  std::vector<double> v(n);
  for (double& x : v) x = uniform(rng);
  return v;
}

Matrix<double> Upload(Backend<double>& be, int64_t rows, int64_t cols,
                      const std::vector<double>& values) {
  Matrix<double> m = be.Allocate(rows, cols);
  be.Upload(values.data(), m);
  return m;
}

std::vector<double> Download(Backend<double>& be, const Matrix<double>& m) {
  std::vector<double> out(m.size());
  be.Download(m, out.data());
  return out;
}

double MaxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// x_i[c, h, w] with zero padding.
double Pixel(const std::vector<double>& x, const WindowGeometry& g, int64_t i, int64_t c, int64_t h,
             int64_t w) {
  if (h < 0 || h >= g.height || w < 0 || w >= g.width) return 0;
  return x[i * g.in_size() + (c * g.height + h) * g.width + w];
}

// PyTorch's conv2d (groups 1, no bias): z_i[o, oh, ow] = Σ_{c, ki, kj} W[o, c, ki, kj] ·
// x_i[c, oh·s_h − p_h + ki·d_h, ow·s_w − p_w + kj·d_w].
TEST(WindowOps, ConvolutionIsIm2ColGemmTransposeRows) {
  auto cpu = MakeBackend<double>({});
  for (const auto& [name, g] : WindowGeometries()) {
    const int64_t count = 2, out_channels = 3, P = g.positions(), K = g.patch_size();
    const std::vector<double> x = RandomValues(count * g.in_size(), 1);
    const std::vector<double> weight = RandomValues(out_channels * K, 2);
    Matrix<double> X = Upload(*cpu, count, g.in_size(), x);
    Matrix<double> W = Upload(*cpu, out_channels, K, weight);
    Matrix<double> cols = cpu->Allocate(count * P, K);
    cpu->Im2Col(g, X, cols);
    Matrix<double> Z = cpu->Allocate(count * P, out_channels);  // [i, oh, ow, o]
    cpu->Gemm(Op::kNone, Op::kTranspose, 1.0, cols, W, 0.0, Z);
    Matrix<double> Y = cpu->Allocate(count, out_channels * P);  // [i, o, oh, ow]
    cpu->TransposeRows(P, out_channels, Z.Reshaped(count, P * out_channels), Y);
    const std::vector<double> got = Download(*cpu, Y);

    std::vector<double> expected(count * out_channels * P);
    for (int64_t i = 0; i < count; ++i)
      for (int64_t o = 0; o < out_channels; ++o)
        for (int64_t oh = 0; oh < g.out_h(); ++oh)
          for (int64_t ow = 0; ow < g.out_w(); ++ow) {
            double z = 0;
            for (int64_t c = 0; c < g.channels; ++c)
              for (int64_t ki = 0; ki < g.kernel_h; ++ki)
                for (int64_t kj = 0; kj < g.kernel_w; ++kj)
                  z += weight[((o * g.channels + c) * g.kernel_h + ki) * g.kernel_w + kj] *
                       Pixel(x, g, i, c, oh * g.stride_h - g.pad_h + ki * g.dilation_h,
                             ow * g.stride_w - g.pad_w + kj * g.dilation_w);
            expected[(i * out_channels + o) * P + oh * g.out_w() + ow] = z;
          }
    const double scale = MaxAbs(expected);
    ASSERT_GT(scale, 0.1) << name;
    for (size_t e = 0; e < expected.size(); ++e)
      ASSERT_NEAR(got[e], expected[e], kSumOrderTolerance * scale) << name << " element " << e;
  }
}

// ⟨Im2Col(x), c⟩ = ⟨x, Col2Im(c)⟩ for random x and c; and Col2Im(c) with beta equals
// beta · dX plus the scatter of c written out as loops.
TEST(WindowOps, Col2ImIsTheAdjointOfIm2Col) {
  auto cpu = MakeBackend<double>({});
  for (const auto& [name, g] : WindowGeometries()) {
    const int64_t count = 3, P = g.positions(), K = g.patch_size();
    const std::vector<double> x = RandomValues(count * g.in_size(), 3);
    const std::vector<double> c = RandomValues(count * P * K, 4);
    const std::vector<double> dx0 = RandomValues(count * g.in_size(), 5);
    Matrix<double> X = Upload(*cpu, count, g.in_size(), x);
    Matrix<double> C = Upload(*cpu, count * P, K, c);
    Matrix<double> cols = cpu->Allocate(count * P, K);
    cpu->Im2Col(g, X, cols);
    Matrix<double> dX = Upload(*cpu, count, g.in_size(), dx0);
    cpu->Col2Im(g, C, 0.0, dX);
    const double lhs = cpu->Dot(cols, C), rhs = cpu->Dot(X, dX);
    // The natural size of either sum's rounding: Σ |x_e| |Col2Im(c)_e|-like terms.
    double magnitude = 0;
    const std::vector<double> adj = Download(*cpu, dX);
    for (size_t e = 0; e < x.size(); ++e) magnitude += std::fabs(x[e] * adj[e]);
    EXPECT_NEAR(lhs, rhs, 1e-12 * magnitude) << name;
    EXPECT_GT(std::fabs(lhs), 1e-3 * magnitude) << name;  // not a vacuous 0 = 0

    const double beta = -0.75;
    cpu->Upload(dx0.data(), dX);
    cpu->Col2Im(g, C, beta, dX);
    std::vector<double> expected(dx0);
    for (double& v : expected) v *= beta;
    for (int64_t i = 0; i < count; ++i)
      for (int64_t oh = 0; oh < g.out_h(); ++oh)
        for (int64_t ow = 0; ow < g.out_w(); ++ow)
          for (int64_t ch = 0; ch < g.channels; ++ch)
            for (int64_t ki = 0; ki < g.kernel_h; ++ki)
              for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
                const int64_t h = oh * g.stride_h - g.pad_h + ki * g.dilation_h;
                const int64_t w = ow * g.stride_w - g.pad_w + kj * g.dilation_w;
                if (h < 0 || h >= g.height || w < 0 || w >= g.width) continue;
                const int64_t r = (i * g.out_h() + oh) * g.out_w() + ow;
                const int64_t k = (ch * g.kernel_h + ki) * g.kernel_w + kj;
                expected[i * g.in_size() + (ch * g.height + h) * g.width + w] += c[r * K + k];
              }
    const std::vector<double> got = Download(*cpu, dX);
    const double scale = MaxAbs(expected);
    for (size_t e = 0; e < expected.size(); ++e)
      ASSERT_NEAR(got[e], expected[e], kSumOrderTolerance * scale) << name << " element " << e;
  }
}

TEST(WindowOps, TransposeRowsIsTheTransposeOfEachRow) {
  auto cpu = MakeBackend<double>({});
  const int64_t rows = 4, a = 6, b = 5;
  const std::vector<double> src = RandomValues(rows * a * b, 6);
  Matrix<double> S = Upload(*cpu, rows, a * b, src), D = cpu->Allocate(rows, a * b);
  cpu->TransposeRows(a, b, S, D);
  const std::vector<double> got = Download(*cpu, D);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t p = 0; p < a; ++p)
      for (int64_t q = 0; q < b; ++q)
        ASSERT_EQ(got[r * a * b + q * a + p], src[r * a * b + p * b + q])
            << r << " " << p << " " << q;
  // And back: transposing with (b, a) restores the rows.
  Matrix<double> back = cpu->Allocate(rows, a * b);
  cpu->TransposeRows(b, a, D, back);
  EXPECT_EQ(Download(*cpu, back), src);
}

// Values checked by hand on the 3 × 3 image 1..9.
TEST(WindowOps, HandCheckedValues) {
  auto cpu = MakeBackend<double>({});
  const std::vector<double> image = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  Matrix<double> X = Upload(*cpu, 1, 9, image);
  // A 2 × 2 kernel, stride 2, padding 1: four windows, each pixel read exactly once, the
  // first row and column of each window but the last in the padding.
  {
    const WindowGeometry g = Geometry(1, 3, 3, 2, 2, 2, 2, 1, 1);
    ASSERT_EQ(g.out_h(), 2);
    ASSERT_EQ(g.out_w(), 2);
    Matrix<double> cols = cpu->Allocate(4, 4);
    cpu->Im2Col(g, X, cols);
    EXPECT_EQ(Download(*cpu, cols),
              (std::vector<double>{0, 0, 0, 1, 0, 0, 2, 3, 0, 4, 0, 7, 5, 6, 8, 9}));
  }
  // A 2 × 2 kernel with dilation 2 on the 3 × 3 image: one window, the four corners.
  {
    const WindowGeometry g = Geometry(1, 3, 3, 2, 2, 1, 1, 0, 0, 2, 2);
    ASSERT_EQ(g.positions(), 1);
    Matrix<double> cols = cpu->Allocate(1, 4);
    cpu->Im2Col(g, X, cols);
    EXPECT_EQ(Download(*cpu, cols), (std::vector<double>{1, 3, 7, 9}));
  }
  // A 3 × 3 kernel with padding 1 ("same"): Col2Im of ones counts the windows that read
  // each pixel, 4 at the corners, 6 on the edges, 9 in the middle.
  {
    const WindowGeometry g = Geometry(1, 3, 3, 3, 3, 1, 1, 1, 1);
    Matrix<double> ones = cpu->Allocate(9, 9);
    cpu->Fill(ones, 1.0);
    Matrix<double> dX = cpu->Allocate(1, 9);
    cpu->Col2Im(g, ones, 0.0, dX);
    EXPECT_EQ(Download(*cpu, dX), (std::vector<double>{4, 6, 4, 6, 9, 6, 4, 6, 4}));
    // The middle window is the image itself.
    Matrix<double> cols = cpu->Allocate(9, 9);
    cpu->Im2Col(g, X, cols);
    EXPECT_EQ(Download(*cpu, cols.Row(4)), image);
  }
}

}  // namespace
}  // namespace lethe::kernels::testing
