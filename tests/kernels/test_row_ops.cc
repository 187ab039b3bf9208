// The row and column scaling ops (Backend::ScaleRows, ScaleColumns, AddColumn, InverseSqrt)
// on the CPU in f64 against plain loops over their definitions, and the recipes
// kernels/backend.h gives for the normalisation layers: a LayerNorm forward pass built from
// the ops against a loop LayerNorm, and per-channel factors and sums on [C, H, W] rows built
// from rank-1 and reshaped Gemms against loops over (example, channel, position).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/backend.h"

namespace lethe::kernels {
namespace {

// The ops do one or two roundings per element, the loops the same ones in the same order
// except where the backend's Gemm sums in blocks: a few ulp of the values' size.
constexpr double kLoopTolerance = 1e-13;

// Deterministic non-trivial values (no RNG: the loops below are the whole reference).
std::vector<double> Values(int64_t count, double phase, double offset = 0) {
  std::vector<double> v(count);
  for (int64_t i = 0; i < count; ++i)
    v[i] = offset + std::sin(phase * (i + 1)) * (1 + 0.1 * (i % 3));
  return v;
}

class RowOps : public ::testing::Test {
 protected:
  Matrix<double> Make(int64_t rows, int64_t cols, const std::vector<double>& values) {
    Matrix<double> m = be->Allocate(rows, cols);
    be->Upload(values.data(), m);
    return m;
  }
  std::vector<double> Get(const Matrix<double>& m) {
    std::vector<double> v(m.size());
    be->Download(m, v.data());
    return v;
  }
  static void ExpectNear(const std::vector<double>& got, const std::vector<double>& want,
                         const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(got[i], want[i], kLoopTolerance * (1 + std::fabs(want[i])))
          << what << " at element " << i;
  }
  std::unique_ptr<Backend<double>> be = MakeBackend<double>({});
};

TEST_F(RowOps, EachOpIsItsDefinition) {
  const int64_t n = 6, d = 5;
  const auto a = Values(n * d, 0.7), o0 = Values(n * d, 1.3), s = Values(n, 2.1),
             r = Values(d, 0.4);
  const double alpha = -0.75, beta = 0.5;
  std::vector<double> want(n * d);

  Matrix<double> A = Make(n, d, a), out = Make(n, d, o0), S = Make(n, 1, s), R = Make(1, d, r);
  be->ScaleRows(alpha, S, A, beta, out);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j)
      want[i * d + j] = alpha * s[i] * a[i * d + j] + beta * o0[i * d + j];
  ExpectNear(Get(out), want, "ScaleRows");

  out = Make(n, d, o0);
  be->ScaleColumns(alpha, A, R, beta, out);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j)
      want[i * d + j] = alpha * a[i * d + j] * r[j] + beta * o0[i * d + j];
  ExpectNear(Get(out), want, "ScaleColumns");

  be->AddColumn(alpha, S, A);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) want[i * d + j] = a[i * d + j] + alpha * s[i];
  ExpectNear(Get(A), want, "AddColumn");

  const auto var = Values(n * d, 0.9, 1.5);  // in [0.4, 2.6]: positive
  Matrix<double> V = Make(n, d, var);
  be->InverseSqrt(V, 1e-5, out);
  for (int64_t i = 0; i < n * d; ++i) want[i] = 1 / std::sqrt(var[i] + 1e-5);
  ExpectNear(Get(out), want, "InverseSqrt");
  // 1/√4 = 0.5 exactly: the op is 1/sqrt (correctly rounded), not an approximate rsqrt.
  Matrix<double> four = Make(1, 1, {3.5});
  be->InverseSqrt(four, 0.5, four);
  EXPECT_EQ(Get(four)[0], 0.5);
}

// LayerNorm over rows (nn.LayerNorm(d) on [n, d]) as engine/layers/layernorm.cc computes it:
// μ = (1/d)·X·1, X − μ1ᵀ, σ² = (1/d)·RowDots, s = 1/√(σ² + ε), x̂ = diag(s)(X − μ1ᵀ),
// y = x̂·diag(γ) + 1βᵀ; against the loop definition.
TEST_F(RowOps, LayerNormRecipeIsTheLoopLayerNorm) {
  const int64_t n = 7, d = 11;
  const double eps = 1e-5;
  const auto x = Values(n * d, 0.37, 0.8), gamma = Values(d, 1.1, 1.0), beta = Values(d, 0.5);
  Matrix<double> X = Make(n, d, x), G = Make(1, d, gamma), B = Make(1, d, beta);
  Matrix<double> ones = be->Allocate(d, 1), mean = be->Allocate(n, 1), s = be->Allocate(n, 1);
  be->Fill(ones, 1.0);
  be->Gemm(Op::kNone, Op::kNone, 1.0 / d, X, ones, 0.0, mean);
  be->AddColumn(-1.0, mean, X);
  be->RowDots(X, X, s);
  be->Axpby(1.0 / d, s, 0.0, s);
  be->InverseSqrt(s, eps, s);
  be->ScaleRows(1.0, s, X, 0.0, X);
  be->ScaleColumns(1.0, X, G, 0.0, X);
  be->AddRow(B, X);

  std::vector<double> want(n * d);
  for (int64_t i = 0; i < n; ++i) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < d; ++j) mu += x[i * d + j] / d;
    for (int64_t j = 0; j < d; ++j) var += (x[i * d + j] - mu) * (x[i * d + j] - mu) / d;
    for (int64_t j = 0; j < d; ++j)
      want[i * d + j] = (x[i * d + j] - mu) / std::sqrt(var + eps) * gamma[j] + beta[j];
  }
  ExpectNear(Get(X), want, "LayerNorm from the ops");
}

// Per-channel factors on [C, H, W] rows: c (1 × C) expanded to the 1 × C·H·W row by the
// rank-1 Gemm c·1ᵀ into its C × H·W reshape, then ScaleColumns; per-example channel sums of
// a count × C·H·W batch as the (count·C) × H·W reshape times 1; whole-batch channel sums as
// ColumnSums, then the C × H·W reshape times 1. Against loops over (i, c, position).
TEST_F(RowOps, PerChannelRecipesAreTheLoops) {
  const int64_t n = 3, C = 4, HW = 6, width = C * HW;
  const auto x = Values(n * width, 0.53), c = Values(C, 1.7, 0.2);
  Matrix<double> X = Make(n, width, x), factor = Make(C, 1, c);
  Matrix<double> ones = be->Allocate(1, HW), row = be->Allocate(1, width);
  be->Fill(ones, 1.0);
  be->Gemm(Op::kNone, Op::kNone, 1.0, factor, ones, 0.0, row.Reshaped(C, HW));
  Matrix<double> Y = be->Allocate(n, width);
  be->ScaleColumns(1.0, X, row, 0.0, Y);
  std::vector<double> want(n * width);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t p = 0; p < HW; ++p)
        want[i * width + ch * HW + p] = x[i * width + ch * HW + p] * c[ch];
  ExpectNear(Get(Y), want, "per-channel scaling");

  Matrix<double> per_example = be->Allocate(n, C);
  be->Gemm(Op::kNone, Op::kTranspose, 1.0, X.Reshaped(n * C, HW), ones, 0.0,
           per_example.Reshaped(n * C, 1));
  std::vector<double> sums(n * C, 0.0), total(C, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t p = 0; p < HW; ++p) {
        sums[i * C + ch] += x[i * width + ch * HW + p];
        total[ch] += x[i * width + ch * HW + p];
      }
  ExpectNear(Get(per_example), sums, "per-example channel sums");

  Matrix<double> columns = be->Allocate(1, width), channel = be->Allocate(C, 1);
  be->ColumnSums(1.0, X, 0.0, columns);
  be->Gemm(Op::kNone, Op::kTranspose, 1.0, columns.Reshaped(C, HW), ones, 0.0, channel);
  ExpectNear(Get(channel), total, "batch channel sums");
}

}  // namespace
}  // namespace lethe::kernels
