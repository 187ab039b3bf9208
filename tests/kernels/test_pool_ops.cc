// Pooling and indexed gather/scatter on the CPU backend in f64 against their definitions:
// a naive loop over each window's elements, values and indices PyTorch computed for the
// same input (torch.nn.functional.max_pool2d(..., return_indices=True) and avg_pool2d,
// run once by hand; PyTorch's index is within H·W, lethe's within C·H·W, so the channel
// offset c·H·W is added), the tie rule on constant inputs, and the adjoint identities the
// layers' backward passes rely on. The conformance suite then holds every other backend
// to this one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/pool_math.h"
#include "tests/kernels/window_geometries.h"

namespace lethe::kernels {
namespace {

// Sums of at most a few dozen terms in f64 in another order: a few ulp of the largest.
constexpr double kSumTolerance = 1e-14;
// ⟨Px, y⟩ against ⟨x, Pᵀy⟩: two different sums of ~10³ products.
constexpr double kAdjointTolerance = 1e-13;

struct Pool {
  std::unique_ptr<Backend<double>> cpu = MakeBackend<double>({});
  Matrix<double> Load(int64_t rows, int64_t cols, const std::vector<double>& values) {
    Matrix<double> m = cpu->Allocate(rows, cols);
    cpu->Upload(values.data(), m);
    return m;
  }
  std::vector<double> Read(const Matrix<double>& m) {
    std::vector<double> out(m.size());
    cpu->Download(m, out.data());
    return out;
  }
};

std::vector<double> Uniform(int64_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1, 1);
  std::vector<double> v(size);
  for (double& x : v) x = uniform(rng);
  return v;
}

// The naive definition: the window's input elements, listed in row-major window order
// (padding skipped) as indices into the example's C·H·W values.
std::vector<int64_t> Window(const WindowGeometry& g, int64_t c, int64_t oh, int64_t ow) {
  std::vector<int64_t> at;
  for (int64_t a = 0; a < g.kernel_h; ++a)
    for (int64_t b = 0; b < g.kernel_w; ++b) {
      const int64_t h = oh * g.stride_h - g.pad_h + a * g.dilation_h;
      const int64_t w = ow * g.stride_w - g.pad_w + b * g.dilation_w;
      if (h >= 0 && h < g.height && w >= 0 && w < g.width)
        at.push_back(c * g.height * g.width + h * g.width + w);
    }
  return at;
}

TEST(PoolOps, MaxPoolAndAvgPoolAreTheirDefinitions) {
  Pool p;
  const int64_t n = 4;
  for (const WindowGeometry& g : testing::PoolingGeometries()) {
    ASSERT_EQ(PoolingGeometryProblem(g), "");
    const int64_t in = g.in_size(), out = g.channels * g.positions();
    const std::vector<double> x = Uniform(n * in, in);
    Matrix<double> X = p.Load(n, in, x), Y = p.cpu->Allocate(n, out),
                   argmax = p.cpu->Allocate(n, out), A = p.cpu->Allocate(n, out);
    p.cpu->MaxPool(g, X, Y, argmax);
    p.cpu->AvgPool(g, X, A);
    const std::vector<double> y = p.Read(Y), index = p.Read(argmax), avg = p.Read(A);
    int64_t wrong_max = 0, wrong_index = 0;
    double worst_avg = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0, o = 0; c < g.channels; ++c)
        for (int64_t oh = 0; oh < g.out_h(); ++oh)
          for (int64_t ow = 0; ow < g.out_w(); ++ow, ++o) {
            const std::vector<int64_t> window = Window(g, c, oh, ow);
            ASSERT_FALSE(window.empty());
            const double* row = x.data() + i * in;
            // std::max_element returns the first of equal maxima: PyTorch's choice.
            const int64_t first =
                *std::max_element(window.begin(), window.end(),
                                  [&](int64_t u, int64_t v) { return row[u] < row[v]; });
            double sum = 0;
            for (int64_t at : window) sum += row[at];
            wrong_max += y[i * out + o] != row[first];
            wrong_index += index[i * out + o] != double(first);
            worst_avg = std::max(
                worst_avg, std::fabs(avg[i * out + o] - sum / double(g.kernel_h * g.kernel_w)));
          }
    EXPECT_EQ(wrong_max, 0) << "max values";
    EXPECT_EQ(wrong_index, 0) << "argmax";
    EXPECT_LE(worst_avg, kSumTolerance) << "average";
  }
}

// The CPU's average pooling and its adjoint are pool_math.h's per-element definitions (the
// CUDA backend's) bit for bit, including their fast paths (no padding; windows that do not
// overlap), with beta 0 and not: the geometries of the other tests, with and without
// padding, and the digits CNN's 2 × 2 pooling.
TEST(PoolOps, AvgPoolIsPoolMathBitForBit) {
  Pool p;
  std::vector<WindowGeometry> geometries = testing::PoolingGeometries();
  geometries.push_back(
      {.channels = 6, .height = 8, .width = 8, .kernel_h = 2, .kernel_w = 2, .stride_h = 2,
       .stride_w = 2});
  for (const WindowGeometry& g : geometries) {
    const PoolShape s = MakePoolShape(g);
    const int64_t n = 3, in = g.in_size(), out = s.out_size();
    const std::vector<double> x = Uniform(n * in, 31), dy = Uniform(n * out, 32),
                              dx0 = Uniform(n * in, 33);
    Matrix<double> Y = p.cpu->Allocate(n, out);
    p.cpu->AvgPool(g, p.Load(n, in, x), Y);
    std::vector<double> want(static_cast<size_t>(n * out));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) want[i * out + o] = AvgPoolAt(s, x.data() + i * in, o);
    EXPECT_EQ(p.Read(Y), want) << "AvgPool, " << in << " inputs";
    for (double beta : {0.0, -1.5}) {
      Matrix<double> dX = p.Load(n, in, dx0);
      p.cpu->AvgPoolAdjoint(g, p.Load(n, out, dy), beta, dX);
      std::vector<double> adj(static_cast<size_t>(n * in));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < in; ++k) {
          const double v = AvgPoolAdjointAt(s, dy.data() + i * out, k);
          adj[i * in + k] = beta == 0 ? v : v + beta * dx0[i * in + k];
        }
      EXPECT_EQ(p.Read(dX), adj) << "AvgPoolAdjoint beta " << beta << ", " << in << " inputs";
    }
  }
}

// x[c, h, w] = ⌊((7·(c·H·W + h·W + w)) mod 5) / 2⌋ ∈ {0, 1, 2}: ties in every window. The
// expected values are what PyTorch 2 returned for this tensor as [1, 2, 5, 6] in f64.
TEST(PoolOps, MatchesPyTorchOnTies) {
  Pool p;
  const int64_t C = 2, H = 5, W = 6;
  std::vector<double> x(C * H * W);
  for (int64_t i = 0; i < C * H * W; ++i) x[i] = double((i * 7) % 5 / 2);
  Matrix<double> X = p.Load(1, C * H * W, x);
  struct Case {
    WindowGeometry g;
    std::vector<double> values, indices, avg_times_9;
  };
  const std::vector<Case> cases = {
      // kernel 3, stride 2, padding 1
      {{.channels = C,
        .height = H,
        .width = W,
        .kernel_h = 3,
        .kernel_w = 3,
        .stride_h = 2,
        .stride_w = 2,
        .pad_h = 1,
        .pad_w = 1},
       {2, 2, 1, 2, 2, 2, 1, 2, 2, 2, 2, 1, 2, 2, 2, 1, 2, 2},
       {7, 2, 4, 7, 7, 17, 19, 27, 22, 37, 32, 34, 37, 37, 47, 49, 57, 52},
       {4, 6, 3, 6, 6, 8, 2, 5, 6, 4, 6, 3, 6, 6, 8, 2, 5, 6}},
      // kernel 2 × 3, stride 1 × 2, padding 1
      {{.channels = C,
        .height = H,
        .width = W,
        .kernel_h = 2,
        .kernel_w = 3,
        .stride_h = 1,
        .stride_w = 2,
        .pad_h = 1,
        .pad_w = 1},
       {1, 2, 1, 2, 2, 1, 2, 2, 2, 2, 1, 2, 1, 2, 2, 1, 2, 2,
        1, 2, 1, 2, 2, 1, 2, 2, 2, 2, 1, 2, 1, 2, 2, 1, 2, 2},
       {1,  2,  4,  7,  2,  4,  7,  7,  17, 12, 14, 17, 19, 27, 22, 24, 27, 27,
        31, 32, 34, 37, 32, 34, 37, 37, 47, 42, 44, 47, 49, 57, 52, 54, 57, 57},
       {}},
      // kernel 3, stride 1, padding 1, dilation 2
      {{.channels = C,
        .height = H,
        .width = W,
        .kernel_h = 3,
        .kernel_w = 3,
        .stride_h = 1,
        .stride_w = 1,
        .pad_h = 1,
        .pad_w = 1,
        .dilation_h = 2,
        .dilation_w = 2},
       std::vector<double>(24, 2.0),
       {7, 22, 7, 22, 27, 2, 17, 2, 7, 22, 7, 22, 37, 52, 37, 52, 57, 32, 47, 32, 37, 52, 37, 52},
       {}},
  };
  for (const Case& k : cases) {
    const int64_t out = C * k.g.positions();
    ASSERT_EQ(out, static_cast<int64_t>(k.indices.size()));
    Matrix<double> Y = p.cpu->Allocate(1, out), argmax = p.cpu->Allocate(1, out);
    p.cpu->MaxPool(k.g, X, Y, argmax);
    EXPECT_EQ(p.Read(Y), k.values);
    EXPECT_EQ(p.Read(argmax), k.indices);
    if (k.avg_times_9.empty()) continue;
    p.cpu->AvgPool(k.g, X, Y);
    const std::vector<double> avg = p.Read(Y);
    for (int64_t o = 0; o < out; ++o) EXPECT_NEAR(avg[o], k.avg_times_9[o] / 9, kSumTolerance);
  }
}

// Small cases by hand: 2 × 4 × 4 counting up, 2 × 2 windows (the maximum is each window's
// bottom-right element); ones with padding 1, where the divisor stays kh·kw (PyTorch's
// count_include_pad): corners see 1 of 4 elements, edges 2, the centre 4.
TEST(PoolOps, HandComputed) {
  Pool p;
  std::vector<double> x(32);
  for (int i = 0; i < 32; ++i) x[i] = i;
  const WindowGeometry g{.channels = 2,
                         .height = 4,
                         .width = 4,
                         .kernel_h = 2,
                         .kernel_w = 2,
                         .stride_h = 2,
                         .stride_w = 2};
  Matrix<double> X = p.Load(1, 32, x), Y = p.cpu->Allocate(1, 8), argmax = p.cpu->Allocate(1, 8);
  p.cpu->MaxPool(g, X, Y, argmax);
  const std::vector<double> expected = {5, 7, 13, 15, 21, 23, 29, 31};
  EXPECT_EQ(p.Read(Y), expected);
  EXPECT_EQ(p.Read(argmax), expected);
  p.cpu->AvgPool(g, X, Y);
  EXPECT_EQ(p.Read(Y), (std::vector<double>{2.5, 4.5, 10.5, 12.5, 18.5, 20.5, 26.5, 28.5}));

  const WindowGeometry padded{.channels = 1,
                              .height = 2,
                              .width = 2,
                              .kernel_h = 2,
                              .kernel_w = 2,
                              .stride_h = 1,
                              .stride_w = 1,
                              .pad_h = 1,
                              .pad_w = 1};
  Matrix<double> ones = p.Load(1, 4, {1, 1, 1, 1}), A = p.cpu->Allocate(1, 9);
  p.cpu->AvgPool(padded, ones, A);
  EXPECT_EQ(p.Read(A), (std::vector<double>{0.25, 0.5, 0.25, 0.5, 1, 0.5, 0.25, 0.5, 0.25}));
  // The adjoint of that map at all-ones: each input lies in 4 windows, each giving 1/4.
  Matrix<double> dX = p.cpu->Allocate(1, 4);
  p.cpu->AvgPoolAdjoint(padded, p.Load(1, 9, std::vector<double>(9, 1.0)), 0.0, dX);
  EXPECT_EQ(p.Read(dX), (std::vector<double>{1, 1, 1, 1}));
}

// A constant input ties every window: the argmax is each window's first input element in
// row-major order (its top-left element inside the input), never padding.
TEST(PoolOps, ConstantInputChoosesTheFirstElementOfEachWindow) {
  Pool p;
  for (const WindowGeometry& g : testing::PoolingGeometries()) {
    const int64_t in = g.in_size(), out = g.channels * g.positions();
    Matrix<double> X = p.cpu->Allocate(2, in), Y = p.cpu->Allocate(2, out),
                   argmax = p.cpu->Allocate(2, out);
    p.cpu->Fill(X, 0.5);
    p.cpu->MaxPool(g, X, Y, argmax);
    const std::vector<double> index = p.Read(argmax);
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t c = 0, o = 0; c < g.channels; ++c)
        for (int64_t oh = 0; oh < g.out_h(); ++oh)
          for (int64_t ow = 0; ow < g.out_w(); ++ow, ++o)
            ASSERT_EQ(index[i * out + o], double(Window(g, c, oh, ow).front()))
                << "window (" << c << ", " << oh << ", " << ow << ")";
    EXPECT_EQ(p.Read(Y), std::vector<double>(2 * out, 0.5));
  }
}

// ⟨P x, y⟩ = ⟨x, Pᵀ y⟩ for average pooling, and ⟨Gather(a), b⟩ = ⟨a, Scatter(b)⟩ with the
// argmax of overlapping windows as the index (repeated indices); beta scales what was there.
TEST(PoolOps, AdjointsAreAdjoint) {
  Pool p;
  const int64_t n = 3;
  for (const WindowGeometry& g : testing::PoolingGeometries()) {
    const int64_t in = g.in_size(), out = g.channels * g.positions();
    Matrix<double> x = p.Load(n, in, Uniform(n * in, 1)), y = p.Load(n, out, Uniform(n * out, 2));
    Matrix<double> Px = p.cpu->Allocate(n, out), Pty = p.Load(n, in, Uniform(n * in, 3));
    p.cpu->AvgPool(g, x, Px);
    const double before = p.cpu->Dot(x, Pty);
    p.cpu->AvgPoolAdjoint(g, y, 2.0, Pty);  // Pty = 2·Pty + Pᵀy
    const double lhs = p.cpu->Dot(Px, y), rhs = p.cpu->Dot(x, Pty) - 2 * before;
    EXPECT_NEAR(lhs, rhs, kAdjointTolerance * (std::fabs(lhs) + 1)) << "AvgPool";

    Matrix<double> m = p.cpu->Allocate(n, out), index = p.cpu->Allocate(n, out);
    p.cpu->MaxPool(g, x, m, index);
    Matrix<double> a = p.Load(n, in, Uniform(n * in, 4)), b = y;
    Matrix<double> Ga = p.cpu->Allocate(n, out), Stb = p.Load(n, in, Uniform(n * in, 5));
    p.cpu->GatherIndexed(a, index, Ga);
    const double scattered_before = p.cpu->Dot(a, Stb);
    p.cpu->ScatterAddIndexed(b, index, -1.0, Stb);  // Stb = −Stb + Sᵀb
    const double glhs = p.cpu->Dot(Ga, b), grhs = p.cpu->Dot(a, Stb) + scattered_before;
    EXPECT_NEAR(glhs, grhs, kAdjointTolerance * (std::fabs(glhs) + 1)) << "Gather/Scatter";
    // The gather by the argmax of x is x's max pool.
    p.cpu->GatherIndexed(x, index, Ga);
    EXPECT_EQ(p.Read(Ga), p.Read(m));
  }
}

// The CPU adjoint (the windows of each row and column listed once per call) is
// pool_math.h's per-element definition, which the CUDA backend evaluates, bit for bit:
// the same windows summed in the same order, then beta.
TEST(PoolOps, AvgPoolAdjointIsThePerElementDefinition) {
  Pool p;
  const int64_t n = 2;
  const std::vector<WindowGeometry> geometries = testing::PoolingGeometries();
  for (size_t k = 0; k < geometries.size(); ++k) {
    const WindowGeometry& g = geometries[k];
    const int64_t in = g.in_size(), out = g.channels * g.positions();
    const std::vector<double> dy = Uniform(n * out, 21), before = Uniform(n * in, 22);
    for (double beta : {0.0, -0.5}) {
      Matrix<double> dX = p.Load(n, in, before);
      p.cpu->AvgPoolAdjoint(g, p.Load(n, out, dy), beta, dX);
      const std::vector<double> got = p.Read(dX);
      const PoolShape s = MakePoolShape(g);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t e = 0; e < in; ++e) {
          const double v = AvgPoolAdjointAt(s, dy.data() + i * out, e);
          ASSERT_EQ(got[i * in + e], beta == 0 ? v : v + beta * before[i * in + e])
              << "geometry " << k << " example " << i << " input " << e << " beta " << beta;
        }
    }
  }
}

// Repeated indices accumulate; beta = 0 gives exact zeros elsewhere, even over NaN.
TEST(PoolOps, ScatterAddAccumulatesRepeats) {
  Pool p;
  Matrix<double> src = p.Load(2, 4, {1, 2, 4, 8, 16, 32, 64, 128});
  Matrix<double> index = p.Load(2, 4, {2, 0, 2, 2, 1, 1, 1, 0});
  Matrix<double> dst = p.cpu->Allocate(2, 3);
  p.cpu->Fill(dst, std::nan(""));
  p.cpu->ScatterAddIndexed(src, index, 0.0, dst);
  EXPECT_EQ(p.Read(dst), (std::vector<double>{2, 0, 13, 128, 112, 0}));
  p.cpu->GatherIndexed(dst, index, src);
  EXPECT_EQ(p.Read(src), (std::vector<double>{13, 2, 13, 13, 112, 112, 112, 128}));
}

// A kernel of 2^31 with padding 2^30 (valid in PyTorch: padding at most half the kernel)
// on a 3 × 4 image: every window holds the whole image, so max pooling is the image's
// maximum, average pooling its sum over 2^62, and the adjoint gives each element Σ dy over
// 2^62. The loops visit only the taps inside the input; over all 2^62 offsets this test
// (and a CLI run on such a spec) never finished.
TEST(PoolOps, HugeWindowsCostTheirInputNotTheirKernel) {
  Pool p;
  const int64_t big = int64_t{1} << 31, H = 3, W = 4;
  const WindowGeometry g{.channels = 1, .height = H, .width = W, .kernel_h = big,
                         .kernel_w = big, .stride_h = 1, .stride_w = 1,
                         .pad_h = big / 2, .pad_w = big / 2};
  ASSERT_EQ(PoolingGeometryProblem(g), "");
  ASSERT_EQ(g.out_h(), H + 1);
  ASSERT_EQ(g.out_w(), W + 1);
  const int64_t out = g.positions();
  const std::vector<double> x = Uniform(H * W, 11);
  const double max = *std::max_element(x.begin(), x.end());
  const int64_t argmax = std::max_element(x.begin(), x.end()) - x.begin();
  double sum = 0;
  for (double v : x) sum += v;
  const double area = 0x1p62;
  Matrix<double> X = p.Load(1, H * W, x), Y = p.cpu->Allocate(1, out),
                 index = p.cpu->Allocate(1, out), A = p.cpu->Allocate(1, out);
  p.cpu->MaxPool(g, X, Y, index);
  p.cpu->AvgPool(g, X, A);
  const std::vector<double> y = p.Read(Y), at = p.Read(index), avg = p.Read(A);
  for (int64_t o = 0; o < out; ++o) {
    EXPECT_EQ(y[o], max) << o;
    EXPECT_EQ(at[o], double(argmax)) << o;
    EXPECT_NEAR(avg[o], sum / area, kSumTolerance * std::fabs(sum) / area) << o;
  }
  const std::vector<double> dy = Uniform(out, 12);
  double dy_sum = 0;
  for (double v : dy) dy_sum += v;
  Matrix<double> dX = p.cpu->Allocate(1, H * W);
  p.cpu->AvgPoolAdjoint(g, p.Load(1, out, dy), 0.0, dX);
  for (double v : p.Read(dX)) EXPECT_NEAR(v, dy_sum / area, kSumTolerance * 30 / area);
}

TEST(PoolOps, GeometryProblemsAreNamed) {
  const WindowGeometry fine{.channels = 1,
                            .height = 4,
                            .width = 4,
                            .kernel_h = 2,
                            .kernel_w = 2,
                            .stride_h = 2,
                            .stride_w = 2};
  EXPECT_EQ(PoolingGeometryProblem(fine), "");
  auto with = [&](auto change) {
    WindowGeometry g = fine;
    change(g);
    return PoolingGeometryProblem(g);
  };
  EXPECT_NE(with([](auto& g) { g.pad_w = 2; }).find("padding width = 2"), std::string::npos);
  EXPECT_NE(with([](auto& g) { g.kernel_h = 5; }).find("exceeds"), std::string::npos);
  EXPECT_NE(with([](auto& g) { g.stride_h = 0; }).find("stride height = 0"), std::string::npos);
  EXPECT_NE(with([](auto& g) { g.channels = 0; }).find("channels = 0"), std::string::npos);
  // Dilation 3 with a 2-wide kernel and padding 1 over a 2-wide input: window 0 holds
  // columns −1 and 2, both outside.
  EXPECT_NE(with([](auto& g) {
              g.width = 2, g.kernel_w = 2, g.pad_w = 1, g.dilation_w = 3, g.stride_w = 1;
            }).find("window 0 along the width lies entirely in the padding"),
            std::string::npos);
  // A kernel larger than the input fits once padded: 3 over 2 with padding 1.
  EXPECT_EQ(with([](auto& g) { g.height = 2, g.kernel_h = 3, g.pad_h = 1, g.stride_h = 1; }), "");
  EXPECT_EQ(kExactIndexLimit<float>, int64_t{1} << 24);
}

}  // namespace
}  // namespace lethe::kernels
