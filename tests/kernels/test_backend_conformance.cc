// Conformance of every Backend<T> operation against the CPU backend in f64, for each
// candidate: the CPU backend in f32 (runs everywhere), the CUDA backend in f64 and f32
// (skipped with a message where no GPU is present, and not built without CUDA). Outputs
// are written into strided views of wider matrices wherever the op allows, and the whole
// parent is compared, so an op that writes outside its view fails too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tests/kernels/conformance_harness.h"
#include "tests/kernels/window_geometries.h"

namespace lethe::kernels::testing {
namespace {

// Each bound is on max|candidate − reference| / scale (scale: max|reference| unless noted).
// Moving values (copies, fills, gathers, argmax) must be bit-exact.
constexpr Tolerance kExactTolerance{0, 0};
// One or two roundings per element (Axpby, AddRow, Multiply, RowOuter); the GPU may fuse
// a multiply-add where the CPU rounds twice.
constexpr Tolerance kElementwiseTolerance{1e-14, 1e-6};
// k-term dot products summed in another order (blocked GEMM, cuBLAS vs Eigen).
constexpr Tolerance kGemmTolerance{1e-12, 1e-5};
// Sums in another order (tree vs vectorised); scale: Σ|terms|, the error's natural size.
constexpr Tolerance kReductionTolerance{1e-12, 1e-5};
// exp/tanh/erfc from different maths libraries differ by a few ulp, and the derivative
// formulas (1 − t², 1 − 2s) amplify that by up to ~100 on these inputs.
constexpr Tolerance kActivationTolerance{1e-12, 1e-5};
// logsumexp, softmax and sigmoid over ≤ 10 logits.
constexpr Tolerance kLossTolerance{1e-12, 1e-5};
// Col2Im: each input pixel sums at most kh·kw window entries, in another order on the GPU.
constexpr Tolerance kWindowSumTolerance{1e-14, 1e-6};

const double kNaN = std::numeric_limits<double>::quiet_NaN();

class Conformance : public BackendTest {};

#define LETHE_HARNESS_TYPES(h)         \
  using H = std::decay_t<decltype(h)>; \
  using T [[maybe_unused]] = typename H::Scalar;

TEST_P(Conformance, UploadDownloadCopyFill) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    auto parent = h.Random(7, 9, 1);
    auto view = parent.Cols(2, 5).Rows(1, 5);
    auto source = h.Random(5, 5, 2);
    h.test().Copy(source.test, view.test);
    h.ref().Copy(source.ref, view.ref);
    h.Expect(parent, kExactTolerance, "Copy into a strided view");
    auto target = h.Random(5, 5, 3);
    h.test().Copy(parent.Cols(1, 5).Rows(2, 5).test, target.test);
    h.ref().Copy(parent.Cols(1, 5).Rows(2, 5).ref, target.ref);
    h.Expect(target, kExactTolerance, "Copy from a strided view");
    h.test().Fill(parent.Cols(4, 3).test, T(0.25));
    h.ref().Fill(parent.Cols(4, 3).ref, 0.25);
    h.Expect(parent, kExactTolerance, "Fill of a strided view");
    // Upload into a view and Download from one (the harness reads back through views).
    std::vector<T> values(view.test.size());
    for (size_t i = 0; i < values.size(); ++i) values[i] = T(i) / T(8);
    std::vector<double> as_double(values.begin(), values.end());
    h.test().Upload(values.data(), view.test);
    h.ref().Upload(as_double.data(), view.ref);
    h.Expect(parent, kExactTolerance, "Upload into a strided view");
    h.Expect(view, kExactTolerance, "Download of a strided view");
    auto zeros = typename H::Pair{h.test().Zeros(3, 4), h.ref().Zeros(3, 4)};
    h.Expect(zeros, kExactTolerance, "Zeros");
  });
}

TEST_P(Conformance, GatherRows) {
  ForCandidate(GetParam(), [](auto& h) {
    auto src = h.Random(50, 13, 4);
    auto dst = h.Random(6, 12, 5);
    const int64_t rows[] = {49, 0, 7, 7, 31, 2};
    h.test().GatherRows(src.Cols(1, 11).test, rows, dst.Cols(0, 11).test);
    h.ref().GatherRows(src.Cols(1, 11).ref, rows, dst.Cols(0, 11).ref);
    h.Expect(dst, kExactTolerance, "GatherRows");
  });
}

TEST_P(Conformance, EraseRows) {
  ForCandidate(GetParam(), [](auto& h) {
    // A contiguous matrix (one move per run of kept rows: the first row, a pair of
    // neighbours and the last row erased) and a strided view (a move per row), then nothing.
    struct Case {
      int64_t rows, cols, first_col, view_cols;
      std::vector<int64_t> erase;
    };
    for (const Case& c : {Case{40, 13, 0, 13, {0, 5, 6, 20, 39}}, Case{30, 13, 1, 11, {3, 4, 29}},
                          Case{9, 5, 0, 5, {}}}) {
      auto whole = h.Random(c.rows, c.cols, 8);
      auto m = whole.Cols(c.first_col, c.view_cols);
      const std::vector<double> before = h.Host(m);
      const std::vector<double> outside = c.first_col ? h.Host(whole.Cols(0, c.first_col))
                                                      : std::vector<double>{};
      h.test().EraseRows(m.test, c.erase.data(), static_cast<int64_t>(c.erase.size()));
      h.ref().EraseRows(m.ref, c.erase.data(), static_cast<int64_t>(c.erase.size()));
      const int64_t left = c.rows - static_cast<int64_t>(c.erase.size());
      // The reference against the rows written out by hand, then the candidate against it.
      std::vector<double> expected;
      for (int64_t i = 0; i < c.rows; ++i)
        if (std::find(c.erase.begin(), c.erase.end(), i) == c.erase.end())
          expected.insert(expected.end(), before.begin() + i * c.view_cols,
                          before.begin() + (i + 1) * c.view_cols);
      EXPECT_EQ(h.Host(m.Rows(0, left)), expected);
      h.Expect(m.Rows(0, left), kExactTolerance, "EraseRows");
      // Columns outside the view are untouched.
      if (c.first_col > 0) {
        EXPECT_EQ(h.Host(whole.Cols(0, c.first_col)), outside);
        h.Expect(whole.Cols(0, c.first_col), kExactTolerance, "EraseRows outside the view");
      }
    }
  });
}

TEST_P(Conformance, Gemm) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    struct Shape {
      int64_t m, n, k;
      bool strided;
    };
    // Small odd sizes (edge tiles), a size past cuBLAS's first tile boundaries, and views.
    for (Shape s : {Shape{37, 29, 53, false}, Shape{37, 29, 53, true}, Shape{1, 40, 300, true},
                    Shape{300, 200, 513, false}}) {
      for (Op op_a : {Op::kNone, Op::kTranspose})
        for (Op op_b : {Op::kNone, Op::kTranspose})
          for (double beta : {0.0, 0.5}) {
            const bool ta = op_a == Op::kTranspose, tb = op_b == Op::kTranspose;
            const int64_t pad = s.strided ? 3 : 0;
            auto A = h.Random(ta ? s.k : s.m, (ta ? s.m : s.k) + pad, 10 + s.k);
            auto B = h.Random(tb ? s.n : s.k, (tb ? s.k : s.n) + pad, 20 + s.k);
            auto C = h.Random(s.m, s.n + pad, 30 + s.k);
            if (beta == 0) h.Fill(C, kNaN);
            auto a = A.Cols(pad, A.test.cols() - pad), b = B.Cols(0, B.test.cols() - pad);
            auto c = C.Cols(pad > 0 ? 1 : 0, s.n);
            const double alpha = H::Round(0.7);
            h.test().Gemm(op_a, op_b, T(alpha), a.test, b.test, T(beta), c.test);
            h.ref().Gemm(op_a, op_b, alpha, a.ref, b.ref, beta, c.ref);
            h.Expect(C, kGemmTolerance,
                     "Gemm " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                         std::to_string(s.k) + (ta ? " A^T" : " A") + (tb ? " B^T" : " B") +
                         (s.strided ? " strided" : "") + " beta " + std::to_string(beta));
          }
    }
    // k = 0: C = beta · C, and beta = 0 gives zeros even over NaN.
    auto A = h.Random(4, 0, 1), B = h.Random(0, 3, 2), C = h.Random(4, 3, 3);
    for (double beta : {0.5, 0.0}) {
      if (beta == 0) h.Fill(C, kNaN);
      h.test().Gemm(Op::kNone, Op::kNone, T(1), A.test, B.test, T(beta), C.test);
      h.ref().Gemm(Op::kNone, Op::kNone, 1.0, A.ref, B.ref, beta, C.ref);
      h.Expect(C, kExactTolerance, "Gemm with k = 0, beta " + std::to_string(beta));
    }
  });
}

TEST_P(Conformance, Axpby) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    auto x = h.Random(40, 33, 1);
    auto y = h.Random(40, 35, 2);
    const double alpha = H::Round(-1.3), beta = H::Round(0.3);
    h.test().Axpby(T(alpha), x.Cols(0, 31).test, T(beta), y.Cols(2, 31).test);
    h.ref().Axpby(alpha, x.Cols(0, 31).ref, beta, y.Cols(2, 31).ref);
    h.Expect(y, kElementwiseTolerance, "Axpby");
    h.Fill(y, kNaN);
    h.test().Axpby(T(alpha), x.test, T(0), y.Cols(1, 33).test);
    h.ref().Axpby(alpha, x.ref, 0.0, y.Cols(1, 33).ref);
    h.Expect(y, kElementwiseTolerance, "Axpby with beta = 0 over NaN");
  });
}

TEST_P(Conformance, DotSumNorm) {
  ForCandidate(GetParam(), [](auto& h) {
    // Contiguous (flattened on the GPU), strided, one long row (many chunks), one element.
    struct Shape {
      int64_t rows, cols, pad;
    };
    for (Shape s : {Shape{300, 257, 0}, Shape{300, 257, 5}, Shape{1, 200003, 0}, Shape{1, 1, 0}}) {
      auto X = h.Random(s.rows, s.cols + s.pad, 1, -1, 1);
      auto Y = h.Random(s.rows, s.cols + s.pad, 2, -1, 1);
      auto x = X.Cols(s.pad, s.cols), y = Y.Cols(0, s.cols);
      const std::vector<double> hx = h.Host(x), hy = h.Host(y);
      double abs_dot = 0, abs_sum = 0;
      for (size_t i = 0; i < hx.size(); ++i)
        abs_dot += std::fabs(hx[i] * hy[i]), abs_sum += std::fabs(hx[i]);
      const std::string shape =
          std::to_string(s.rows) + "x" + std::to_string(s.cols) + (s.pad ? " strided" : "");
      h.ExpectScalar(h.test().Dot(x.test, y.test), h.ref().Dot(x.ref, y.ref), abs_dot,
                     kReductionTolerance, "Dot " + shape);
      h.ExpectScalar(h.test().Sum(x.test), h.ref().Sum(x.ref), abs_sum, kReductionTolerance,
                     "Sum " + shape);
      const double norm = Norm(h.ref(), x.ref);  // Σx² has no cancellation: relative
      h.ExpectScalar(Norm(h.test(), x.test), norm, norm, kReductionTolerance, "Norm " + shape);
    }
  });
}

TEST_P(Conformance, RowDots) {
  ForCandidate(GetParam(), [](auto& h) {
    struct Shape {
      int64_t rows, cols;
    };
    // CG's shape (few rows of p), the loss shape (many narrow rows), one in between.
    for (Shape s : {Shape{3, 70001}, Shape{5000, 10}, Shape{64, 3000}, Shape{4, 0}}) {
      auto A = h.Random(s.rows, s.cols + 2, 1, -1, 1);
      auto B = h.Random(s.rows, s.cols + 1, 2, -1, 1);
      auto out = h.Random(s.rows, 3, 3);
      h.Fill(out.Cols(1, 1), kNaN);
      auto a = A.Cols(2, s.cols), b = B.Cols(1, s.cols);
      h.test().RowDots(a.test, b.test, out.Cols(1, 1).test);
      h.ref().RowDots(a.ref, b.ref, out.Cols(1, 1).ref);
      // Scale: a row's Σ|a b|, ≈ cols/4 for independent uniform entries on [-1, 1].
      h.Expect(out, kReductionTolerance,
               "RowDots " + std::to_string(s.rows) + "x" + std::to_string(s.cols),
               std::max<double>(1.0, s.cols / 4.0));
    }
  });
}

TEST_P(Conformance, ColumnSums) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    struct Shape {
      int64_t rows, cols;
    };
    for (Shape s : {Shape{37, 29}, Shape{5000, 10}, Shape{3, 20001}, Shape{0, 6}})
      for (double beta : {0.0, 0.5}) {
        auto A = h.Random(s.rows, s.cols + 2, 1, -1, 1);
        auto out = h.Random(1, s.cols + 4, 2);
        if (beta == 0) h.Fill(out, kNaN);
        auto a = A.Cols(1, s.cols), o = out.Cols(2, s.cols);
        const double alpha = H::Round(1.0 / 3);
        h.test().ColumnSums(T(alpha), a.test, T(beta), o.test);
        h.ref().ColumnSums(alpha, a.ref, beta, o.ref);
        // Scale: alpha · Σ_i |a_ij| ≈ rows/6 for uniform entries on [-1, 1].
        h.Expect(o, kReductionTolerance,
                 "ColumnSums " + std::to_string(s.rows) + "x" + std::to_string(s.cols) + " beta " +
                     std::to_string(beta),
                 std::max<double>(1.0, s.rows / 6.0));
      }
  });
}

TEST_P(Conformance, AddRowMultiplyRowOuter) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    auto A = h.Random(30, 12, 1);
    auto row = h.Random(2, 10, 2);
    h.test().AddRow(row.Rows(1, 1).test, A.Cols(1, 10).test);
    h.ref().AddRow(row.Rows(1, 1).ref, A.Cols(1, 10).ref);
    h.Expect(A, kElementwiseTolerance, "AddRow");

    auto B = h.Random(30, 11, 3);
    auto C = h.Random(30, 13, 4);
    const double beta = H::Round(0.7);
    h.test().Multiply(A.Cols(0, 10).test, B.Cols(1, 10).test, T(beta), C.Cols(3, 10).test);
    h.ref().Multiply(A.Cols(0, 10).ref, B.Cols(1, 10).ref, beta, C.Cols(3, 10).ref);
    h.Expect(C, kElementwiseTolerance, "Multiply");
    // beta = 0 with C aliasing A: the engine's in-place δ ⊙ σ'(z).
    h.test().Multiply(A.Cols(0, 10).test, B.Cols(0, 10).test, T(0), A.Cols(0, 10).test);
    h.ref().Multiply(A.Cols(0, 10).ref, B.Cols(0, 10).ref, 0.0, A.Cols(0, 10).ref);
    h.Expect(A, kElementwiseTolerance, "Multiply in place");

    auto out = h.Random(30, 7 * 5 + 2, 5);
    h.test().RowOuter(A.Cols(2, 7).test, B.Cols(3, 5).test, out.Cols(1, 35).test);
    h.ref().RowOuter(A.Cols(2, 7).ref, B.Cols(3, 5).ref, out.Cols(1, 35).ref);
    h.Expect(out, kElementwiseTolerance, "RowOuter");
  });
}

TEST_P(Conformance, Activate) {
  ForCandidate(GetParam(), [](auto& h) {
    // Uniform on [-6, 6] plus the special points: 0 (relu's kink), tiny, saturated.
    auto Z = h.Random(64, 21, 1, -6, 6);
    auto special = h.FromHost(1, 8, {0.0, 1e-8, -1e-8, 30.0, -30.0, 1.0, -1.0, 2.5});
    h.test().Copy(special.test, Z.Rows(0, 1).Cols(0, 8).test);
    h.ref().Copy(special.ref, Z.Rows(0, 1).Cols(0, 8).ref);
    for (Activation act : {Activation::kIdentity, Activation::kRelu, Activation::kTanh,
                           Activation::kSigmoid, Activation::kGelu, Activation::kSoftplus})
      for (int order = 0; order <= 2; ++order) {
        auto out = h.Random(64, 23, 2);
        h.test().Activate(act, order, Z.Cols(0, 20).test, out.Cols(2, 20).test);
        h.ref().Activate(act, order, Z.Cols(0, 20).ref, out.Cols(2, 20).ref);
        h.Expect(out, kActivationTolerance,
                 std::string("Activate ") + Name(act) + " order " + std::to_string(order));
      }
    // In place (out aliases Z), as the forward pass does.
    auto W = h.Random(16, 9, 3, -3, 3);
    h.test().Activate(Activation::kGelu, 1, W.test, W.test);
    h.ref().Activate(Activation::kGelu, 1, W.ref, W.ref);
    h.Expect(W, kActivationTolerance, "Activate in place");
  });
}

TEST_P(Conformance, Losses) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    const int64_t n = 301;
    struct Case {
      LossKind loss;
      int64_t width;
    };
    for (Case c : {Case{LossKind::kCrossEntropy, 10}, Case{LossKind::kLogistic, 1},
                   Case{LossKind::kMse, 3}}) {
      const std::string name = Name(c.loss);
      auto F = h.Random(n, c.width + 2, 1, -4, 4);
      auto f = F.Cols(1, c.width);
      auto Y = c.loss == LossKind::kCrossEntropy ? h.Labels(n, c.width, 2)
               : c.loss == LossKind::kLogistic   ? h.Labels(n, 2, 2)
                                                 : h.Random(n, c.width, 2);
      auto values = h.Random(n, 2, 3);
      h.test().LossValues(c.loss, f.test, Y.test, values.Cols(1, 1).test);
      h.ref().LossValues(c.loss, f.ref, Y.ref, values.Cols(1, 1).ref);
      h.Expect(values, kLossTolerance, "LossValues " + name);

      const double scale = H::Round(1.0 / n);
      auto G = h.Random(n, c.width + 1, 4);
      h.test().LossGradient(c.loss, T(scale), f.test, Y.test, G.Cols(0, c.width).test);
      h.ref().LossGradient(c.loss, scale, f.ref, Y.ref, G.Cols(0, c.width).ref);
      // Scale: `scale` itself (gradients and Hessian products are O(1) before scaling), not
      // max|G|, which the unscaled guard columns around the view would dominate.
      h.Expect(G, kLossTolerance, "LossGradient " + name, scale);

      auto V = h.Random(n, c.width, 5);
      auto HV = h.Random(n, c.width + 3, 6);
      h.test().LossHessianProduct(c.loss, T(scale), f.test, V.test, HV.Cols(3, c.width).test);
      h.ref().LossHessianProduct(c.loss, scale, f.ref, V.ref, HV.Cols(3, c.width).ref);
      h.Expect(HV, kLossTolerance, "LossHessianProduct " + name, scale);

      auto right = h.Random(n, 1, 7);
      h.test().Correct(c.loss, f.test, Y.test, right.test);
      h.ref().Correct(c.loss, f.ref, Y.ref, right.ref);
      h.Expect(right, kExactTolerance, "Correct " + name);
    }
  });
}

// Dense symmetric algebra of the direct solver: A = B Bᵀ/p + shift·I from a random B
// (eigenvalues in about [shift, shift + 5.3]: condition number ~12 for shift 0.5, and
// indefinite for shift −0.5), at a small odd size and one past cuSOLVER's blocking.
constexpr Tolerance kFactorTolerance{1e-12, 1e-5};
// A solve amplifies the factor's rounding by the condition number (~12).
constexpr Tolerance kSolveTolerance{1e-11, 1e-4};
// Eigenvalues by a backward-stable iteration move by about p·ε·‖A‖ (p = 600: 4e-5 in f32).
constexpr Tolerance kEigenvalueTolerance{1e-12, 2e-4};

std::vector<double> ShiftedGram(int64_t p, double shift, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-2, 2);
  std::vector<double> b(p * p), a(p * p, 0.0);
  for (double& x : b) x = uniform(rng);
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t k = 0; k < p; ++k) s += b[i * p + k] * b[j * p + k];
      a[i * p + j] = a[j * p + i] = s / p + (i == j ? shift : 0.0);
    }
  return a;
}

TEST_P(Conformance, Symmetrize) {
  ForCandidate(GetParam(), [](auto& h) {
    for (int64_t p : {1, 37, 301}) {
      auto A = h.Random(p, p, 40 + p);
      h.test().Symmetrize(A.test);
      h.ref().Symmetrize(A.ref);
      h.Expect(A, kElementwiseTolerance, "Symmetrize " + std::to_string(p));
      const std::vector<double> a = h.Host(A);
      for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j < i; ++j) ASSERT_EQ(a[i * p + j], a[j * p + i]);
    }
  });
}

// Weights of one sign (the SYRK path of the CPU backend, both signs), of mixed signs (its
// GEMM path), all zero (MSE's off-diagonal blocks), read from a strided column, into a
// strided block of a wider matrix; k = 300 spans two of the CPU backend's tiles and n·k²
// is above its parallel threshold.
TEST_P(Conformance, WeightedGram) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    for (int64_t k : {1, 7, 300}) {
      const int64_t n = 200;
      auto X = h.Random(n, k + 2, 50 + k);
      auto W = h.Random(n, 4, 60 + k);  // column 0 mixed, 1 positive, 2 negative, 3 zero
      auto positive = h.Random(n, 1, 70 + k, 0.1, 2), negative = h.Random(n, 1, 80 + k, -2, -0.1);
      h.test().Copy(positive.test, W.Cols(1, 1).test);
      h.ref().Copy(positive.ref, W.Cols(1, 1).ref);
      h.test().Copy(negative.test, W.Cols(2, 1).test);
      h.ref().Copy(negative.ref, W.Cols(2, 1).ref);
      h.Fill(W.Cols(3, 1), 0);
      for (int j = 0; j < 4; ++j) {
        const std::string what =
            "WeightedGram k = " + std::to_string(k) + " weights " + std::to_string(j);
        auto out = h.Random(k + 1, k + 3, 90 + k);
        const double alpha = H::Round(0.3);
        h.test().WeightedGram(T(alpha), X.Cols(1, k).test, W.Cols(j, 1).test, T(0),
                              out.Rows(1, k).Cols(2, k).test);
        h.ref().WeightedGram(alpha, X.Cols(1, k).ref, W.Cols(j, 1).ref, 0.0,
                             out.Rows(1, k).Cols(2, k).ref);
        h.Expect(out, kGemmTolerance, what);
        // beta ≠ 0 accumulates onto a symmetric out (Σ over two weight vectors).
        h.test().WeightedGram(T(1), X.Cols(1, k).test, W.Cols((j + 1) % 4, 1).test, T(-0.5),
                              out.Rows(1, k).Cols(2, k).test);
        h.ref().WeightedGram(1.0, X.Cols(1, k).ref, W.Cols((j + 1) % 4, 1).ref, -0.5,
                             out.Rows(1, k).Cols(2, k).ref);
        h.Expect(out, kGemmTolerance, what + " with beta");
        std::vector<T> test(out.test.size());
        h.test().Download(out.test, test.data());
        for (int64_t a = 0; a < k; ++a)
          for (int64_t b = 0; b < a; ++b)
            ASSERT_EQ(test[(1 + a) * (k + 3) + 2 + b], test[(1 + b) * (k + 3) + 2 + a]) << what;
      }
    }
  });
}

TEST_P(Conformance, CholeskyFactorAndSolve) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    for (int64_t p : {37, 600}) {
      const std::string size = " p = " + std::to_string(p);
      auto A = h.FromHost(p, p, ShiftedGram(p, 0.5, p));
      ASSERT_TRUE(h.test().CholeskyFactor(A.test)) << size;
      ASSERT_TRUE(h.ref().CholeskyFactor(A.ref)) << size;
      // Only the lower triangle is specified: compare it.
      std::vector<T> test(p * p);
      h.test().Download(A.test, test.data());
      const std::vector<double> ref = h.Host(A);
      double worst = 0, scale = 0;
      for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j <= i; ++j) {
          worst = std::max(worst, std::fabs(double(test[i * p + j]) - ref[i * p + j]));
          scale = std::max(scale, std::fabs(ref[i * p + j]));
        }
      EXPECT_LE(worst / scale, H::Tol(kFactorTolerance)) << "Cholesky factor" << size;
      // Three right-hand sides in a strided view, its guard columns left alone.
      auto X = h.Random(3, p + 2, 50 + p);
      auto x = X.Cols(1, p);
      h.test().CholeskySolve(A.test, x.test);
      h.ref().CholeskySolve(A.ref, x.ref);
      h.Expect(X, kSolveTolerance, "CholeskySolve" + size);
      // One right-hand side (a preconditioner's application): the CPU backend's vector path.
      auto y = h.Random(1, p, 60 + p);
      h.test().CholeskySolve(A.test, y.test);
      h.ref().CholeskySolve(A.ref, y.ref);
      h.Expect(y, kSolveTolerance, "CholeskySolve, one right-hand side" + size);
    }
  });
}

TEST_P(Conformance, CholeskyRefusesIndefiniteAndEigenvaluesFindWhy) {
  ForCandidate(GetParam(), [](auto& h) {
    for (int64_t p : {37, 600}) {
      const std::string size = " p = " + std::to_string(p);
      const std::vector<double> gram = ShiftedGram(p, -0.5, 7 * p);
      auto A = h.FromHost(p, p, gram);
      EXPECT_FALSE(h.test().CholeskyFactor(A.test)) << size;
      EXPECT_FALSE(h.ref().CholeskyFactor(A.ref)) << size;
      auto B = h.FromHost(p, p, gram);
      auto values = h.Random(1, p, 3);
      h.test().SymmetricEigen(B.test, values.test, false);
      h.ref().SymmetricEigen(B.ref, values.ref, false);
      h.Expect(values, kEigenvalueTolerance, "SymmetricEigenvalues" + size);
      const std::vector<double> v = h.Host(values);
      EXPECT_LT(v.front(), 0) << size;
      EXPECT_TRUE(std::is_sorted(v.begin(), v.end())) << size;
    }
  });
}

// For an orthogonal E (rows, p × p) and a symmetric tridiagonal T (diagonal d, off-diagonal
// o; o = 0 for a diagonal T): max |Eᵀ T E − A| / max |A| and max |E Eᵀ − I|, in double.
template <typename T>
std::pair<double, double> SimilarityErrors(const std::vector<double>& a, const std::vector<T>& e,
                                           const std::vector<T>& d, const std::vector<T>& o,
                                           int64_t p) {
  double scale = 0, worst_a = 0, worst_i = 0;
  for (double x : a) scale = std::max(scale, std::fabs(x));
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < p; ++j) {
      double eta = 0, id = 0;
      for (int64_t k = 0; k < p; ++k) {
        // (T E)_{k,j} = d_k e_{k,j} + o_{k-1} e_{k-1,j} + o_k e_{k+1,j}
        double te = double(d[k]) * double(e[k * p + j]);
        if (k > 0) te += double(o[k - 1]) * double(e[(k - 1) * p + j]);
        if (k + 1 < p) te += double(o[k]) * double(e[(k + 1) * p + j]);
        eta += double(e[k * p + i]) * te;
        id += double(e[i * p + k]) * double(e[j * p + k]);
      }
      worst_a = std::max(worst_a, std::fabs(eta - a[i * p + j]) / scale);
      worst_i = std::max(worst_i, std::fabs(id - (i == j)));
    }
  return {worst_a, worst_i};
}

// Eigenvectors are defined up to sign (and rotation within a repeated eigenvalue), so the
// candidate's are checked by what they must satisfy: U Uᵀ = I and Uᵀ diag(λ) U = A.
TEST_P(Conformance, SymmetricEigenvectorsReconstructTheMatrix) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    for (int64_t p : {37, 300}) {
      const std::string size = " p = " + std::to_string(p);
      const std::vector<double> gram = ShiftedGram(p, -0.5, 11 * p);
      auto A = h.FromHost(p, p, gram);
      auto values = h.Random(1, p, 5);
      h.test().SymmetricEigen(A.test, values.test, true);
      std::vector<T> u(p * p), lambda(p);
      h.test().Download(A.test, u.data());
      h.test().Download(values.test, lambda.data());
      std::vector<double> rounded(gram.size());
      for (size_t i = 0; i < gram.size(); ++i) rounded[i] = h.Round(gram[i]);
      const auto [worst_a, worst_i] =
          SimilarityErrors(rounded, u, lambda, std::vector<T>(p, T(0)), p);
      EXPECT_LE(worst_a, h.Tol(kEigenvalueTolerance)) << "Uᵀ diag(λ) U vs A" << size;
      EXPECT_LE(worst_i, h.Tol(kEigenvalueTolerance)) << "U Uᵀ vs I" << size;
      EXPECT_TRUE(std::is_sorted(lambda.begin(), lambda.end())) << size;
    }
  });
}

// Householder vectors are defined up to sign, so T and E are checked by what they must
// satisfy: E Eᵀ = I, Eᵀ T E = A, and T's off-diagonal has its unused last entry zero.
TEST_P(Conformance, SymmetricTridiagonalReconstructsTheMatrix) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    for (int64_t p : {1, 2, 37, 300}) {
      const std::string size = " p = " + std::to_string(p);
      const std::vector<double> gram = ShiftedGram(p, -0.5, 13 * p);
      auto A = h.FromHost(p, p, gram);
      auto diagonal = h.Random(1, p, 6), off = h.Random(1, p, 7);
      h.test().SymmetricTridiagonal(A.test, diagonal.test, off.test);
      std::vector<T> e(p * p), d(p), o(p);
      h.test().Download(A.test, e.data());
      h.test().Download(diagonal.test, d.data());
      h.test().Download(off.test, o.data());
      EXPECT_EQ(o[p - 1], T(0)) << size;
      std::vector<double> rounded(gram.size());
      for (size_t i = 0; i < gram.size(); ++i) rounded[i] = h.Round(gram[i]);
      const auto [worst_a, worst_i] = SimilarityErrors(rounded, e, d, o, p);
      EXPECT_LE(worst_a, h.Tol(kEigenvalueTolerance)) << "Eᵀ T E vs A" << size;
      EXPECT_LE(worst_i, h.Tol(kEigenvalueTolerance)) << "E Eᵀ vs I" << size;
    }
  });
}

// Rows with their own factors, in a strided view: each row solved against the CPU in f64,
// and the reference checked by multiplying back, L D Lᵀ x = b.
TEST_P(Conformance, TridiagonalSolveOfEachRowsLdlFactors) {
  ForCandidate(GetParam(), [](auto& h) {
    for (int64_t p : {1, 2, 50}) {
      const std::string size = " p = " + std::to_string(p);
      const int64_t r = 4;
      std::mt19937_64 rng(p);
      std::uniform_real_distribution<double> pivot(0.5, 2), multiplier(-0.9, 0.9);
      std::vector<double> d(r * p), l(r * p, 0.0);
      for (double& x : d) x = pivot(rng);
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j + 1 < p; ++j) l[i * p + j] = multiplier(rng);
      for (double& x : d) x = h.Round(x);  // both backends see the rounded factors
      for (double& x : l) x = h.Round(x);
      auto D = h.FromHost(r, p, d), L = h.FromHost(r, p, l);
      auto X = h.Random(r, p + 3, 60 + p);
      const std::vector<double> before = h.Host(X);
      auto x = X.Cols(2, p);
      h.test().TridiagonalSolve(D.test, L.test, x.test);
      h.ref().TridiagonalSolve(D.ref, L.ref, x.ref);
      h.Expect(X, kSolveTolerance, "TridiagonalSolve" + size);
      std::vector<double> solved(r * p);
      h.ref().Download(x.ref, solved.data());
      double worst = 0;
      for (int64_t i = 0; i < r; ++i) {
        const double* s = solved.data() + i * p;
        const double* di = d.data() + i * p;
        const double* li = l.data() + i * p;
        for (int64_t j = 0; j < p; ++j) {
          // (L D Lᵀ)_{j,·} s = l_{j-1} d_{j-1} (s_{j-1} + l_{j-1} s_j) + d_j (s_j + l_j s_{j+1})
          double b = di[j] * (s[j] + (j + 1 < p ? li[j] * s[j + 1] : 0.0));
          if (j > 0) b += li[j - 1] * di[j - 1] * (s[j - 1] + li[j - 1] * s[j]);
          worst = std::max(worst, std::fabs(b - before[i * (p + 3) + 2 + j]));
        }
      }
      EXPECT_LE(worst, 1e-12) << "L D Lᵀ x vs b" << size;
    }
  });
}

// Im2Col moves values (zeros in the padding): bit-exact, into a strided view of a wider
// matrix whose guard columns must survive, from a strided view of the images.
TEST_P(Conformance, Im2Col) {
  ForCandidate(GetParam(), [](auto& h) {
    for (const auto& [name, g] : WindowGeometries()) {
      const int64_t count = 3;
      auto X = h.Random(count, g.in_size() + 3, 70);
      auto cols = h.Random(count * g.positions(), g.patch_size() + 2, 71);
      h.test().Im2Col(g, X.Cols(2, g.in_size()).test, cols.Cols(1, g.patch_size()).test);
      h.ref().Im2Col(g, X.Cols(2, g.in_size()).ref, cols.Cols(1, g.patch_size()).ref);
      h.Expect(cols, kExactTolerance, "Im2Col " + name);
    }
  });
}

// Col2Im with beta = 0 over NaN (dX not read), beta = 1 and beta = -1.5 (in turn: S, 2S,
// -2S for the scatter S, never a cancellation to zero), in strided views.
TEST_P(Conformance, Col2Im) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    for (const auto& [name, g] : WindowGeometries()) {
      const int64_t count = 3;
      auto cols = h.Random(count * g.positions(), g.patch_size() + 3, 72);
      auto dX = h.Random(count, g.in_size() + 2, 73);
      for (double beta : {0.0, 1.0, -1.5}) {
        if (beta == 0) h.Fill(dX, kNaN);
        const auto c = cols.Cols(3, g.patch_size());
        const auto x = dX.Cols(1, g.in_size());
        h.test().Col2Im(g, c.test, T(beta), x.test);
        h.ref().Col2Im(g, c.ref, beta, x.ref);
        h.Expect(dX, kWindowSumTolerance, "Col2Im " + name + " beta " + std::to_string(beta));
      }
    }
  });
}

// Bit-exact (values only move); shapes of channels-last ⇄ channels-first, a 1 × n row, and
// strided views.
TEST_P(Conformance, TransposeRows) {
  ForCandidate(GetParam(), [](auto& h) {
    struct Shape {
      int64_t rows, a, b;
    };
    for (Shape s : {Shape{5, 12, 3}, Shape{5, 3, 12}, Shape{2, 1, 7}, Shape{300, 49, 16}}) {
      const int64_t n = s.a * s.b;
      auto src = h.Random(s.rows, n + 2, 74);
      auto dst = h.Random(s.rows, n + 3, 75);
      h.test().TransposeRows(s.a, s.b, src.Cols(1, n).test, dst.Cols(2, n).test);
      h.ref().TransposeRows(s.a, s.b, src.Cols(1, n).ref, dst.Cols(2, n).ref);
      h.Expect(dst, kExactTolerance,
               "TransposeRows " + std::to_string(s.a) + "x" + std::to_string(s.b));
    }
  });
}

// The normalisation layers' ops: strided views everywhere (the whole parents compared, so a
// write outside a view fails), alpha and beta, beta = 0 over NaN, in place, and a size past
// the CPU's parallel threshold.
TEST_P(Conformance, ScaleRowsScaleColumnsAddColumnInverseSqrt) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    struct Shape {
      int64_t rows, cols;
    };
    for (Shape s : {Shape{37, 29}, Shape{1, 1}, Shape{700, 401}}) {
      const std::string shape = " " + std::to_string(s.rows) + "x" + std::to_string(s.cols);
      auto A = h.Random(s.rows, s.cols + 2, 1);
      auto out = h.Random(s.rows, s.cols + 3, 2);
      auto factors = h.Random(s.rows, 2, 3);  // column 1: s (rows × 1, strided)
      auto row = h.Random(2, s.cols + 1, 4);  // row 1, columns 1..: r (1 × cols)
      auto a = A.Cols(1, s.cols), o = out.Cols(2, s.cols);
      auto sv = factors.Cols(1, 1), r = row.Rows(1, 1).Cols(1, s.cols);
      const double alpha = H::Round(-0.7), beta = H::Round(0.3);
      for (double b : {beta, 0.0}) {
        const std::string what = shape + " beta " + std::to_string(b);
        if (b == 0) h.Fill(out, kNaN);
        h.test().ScaleRows(T(alpha), sv.test, a.test, T(b), o.test);
        h.ref().ScaleRows(alpha, sv.ref, a.ref, b, o.ref);
        h.Expect(out, kElementwiseTolerance, "ScaleRows" + what);
        if (b == 0) h.Fill(out, kNaN);
        h.test().ScaleColumns(T(alpha), a.test, r.test, T(b), o.test);
        h.ref().ScaleColumns(alpha, a.ref, r.ref, b, o.ref);
        h.Expect(out, kElementwiseTolerance, "ScaleColumns" + what);
      }
      // In place (out = A), as a layer normalises its own buffer.
      h.test().ScaleRows(T(1), sv.test, a.test, T(0), a.test);
      h.ref().ScaleRows(1.0, sv.ref, a.ref, 0.0, a.ref);
      h.Expect(A, kElementwiseTolerance, "ScaleRows in place" + shape);
      h.test().ScaleColumns(T(alpha), a.test, r.test, T(beta), a.test);
      h.ref().ScaleColumns(alpha, a.ref, r.ref, beta, a.ref);
      h.Expect(A, kElementwiseTolerance, "ScaleColumns in place" + shape);
      h.test().AddColumn(T(alpha), sv.test, a.test);
      h.ref().AddColumn(alpha, sv.ref, a.ref);
      h.Expect(A, kElementwiseTolerance, "AddColumn" + shape);
      // Variances (positive) plus eps; in place and into a strided view.
      auto var = h.Random(s.rows, s.cols + 2, 5, 0, 3);
      h.test().InverseSqrt(var.Cols(0, s.cols).test, T(1e-5), o.test);
      h.ref().InverseSqrt(var.Cols(0, s.cols).ref, H::Round(1e-5), o.ref);
      h.Expect(out, kElementwiseTolerance, "InverseSqrt" + shape);
      h.test().InverseSqrt(var.test, T(0.5), var.test);
      h.ref().InverseSqrt(var.ref, H::Round(0.5), var.ref);
      h.Expect(var, kElementwiseTolerance, "InverseSqrt in place" + shape);
    }
  });
}

// Same inputs, same bits: reductions use no atomics and a shape-determined order.
TEST_P(Conformance, ReductionsAreReproducible) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    auto X = h.Random(3, 300007, 1);
    auto out = h.Random(3, 1, 2);
    const T first = h.test().Dot(X.test, X.test);
    h.test().RowDots(X.test, X.test, out.test);
    std::vector<T> rows_first(3), rows_second(3);
    h.test().Download(out.test, rows_first.data());
    for (int repeat = 0; repeat < 3; ++repeat) {
      EXPECT_EQ(h.test().Dot(X.test, X.test), first);
      h.test().RowDots(X.test, X.test, out.test);
      h.test().Download(out.test, rows_second.data());
      EXPECT_EQ(rows_second, rows_first);
    }
  });
}

// --- pooling and indexed gather/scatter -------------------------------------------------

std::string Describe(const WindowGeometry& g) {
  return "[" + std::to_string(g.channels) + "," + std::to_string(g.height) + "," +
         std::to_string(g.width) + "] kernel " + std::to_string(g.kernel_h) + "x" +
         std::to_string(g.kernel_w) + " stride " + std::to_string(g.stride_h) + "x" +
         std::to_string(g.stride_w) + " padding " + std::to_string(g.pad_h) + "x" +
         std::to_string(g.pad_w) + " dilation " + std::to_string(g.dilation_h);
}

// Max pooling moves values, so Y and the argmax must be bit-exact: on random inputs, and on
// inputs of three values only, whose many ties every backend must break alike (the first
// maximal element in row-major window order).
TEST_P(Conformance, MaxPool) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    const int64_t n = 6;
    for (const WindowGeometry& g : PoolingGeometries()) {
      const int64_t in = g.in_size(), out = g.channels * g.positions();
      for (bool ties : {false, true}) {
        auto X = h.Random(n, in + 3, 1 + in);
        if (ties) {
          std::vector<double> values = h.Host(X);
          for (double& v : values) v = std::floor(1.5 * v);  // {-3, ..., 2}: ties everywhere
          X = h.FromHost(n, in + 3, values);
        }
        auto Y = h.Random(n, out + 2, 2), argmax = h.Random(n, out + 1, 3);
        h.test().MaxPool(g, X.Cols(2, in).test, Y.Cols(1, out).test, argmax.Cols(0, out).test);
        h.ref().MaxPool(g, X.Cols(2, in).ref, Y.Cols(1, out).ref, argmax.Cols(0, out).ref);
        const std::string what = "MaxPool " + Describe(g) + (ties ? " with ties" : "");
        h.Expect(Y, kExactTolerance, what + ": values");
        h.Expect(argmax, kExactTolerance, what + ": argmax");
      }
    }
  });
}

// Indices from a max pooling with overlapping windows (one input chosen by several
// outputs) and a hand-made index with repeats, into strided views.
TEST_P(Conformance, GatherAndScatterAddIndexed) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    const WindowGeometry g = PoolingGeometries()[1];  // 3 × 3 windows at stride 1
    const int64_t n = 7, in = g.in_size(), out = g.channels * g.positions();
    auto X = h.Random(n, in, 1);
    auto Y = h.Random(n, out, 2), argmax = h.Random(n, out, 3);
    h.test().MaxPool(g, X.test, Y.test, argmax.test);
    h.ref().MaxPool(g, X.ref, Y.ref, argmax.ref);
    std::vector<double> repeats(n * 5);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < 5; ++j) repeats[i * 5 + j] = double((3 * i + (j % 3) * 7) % in);
    auto hand = h.FromHost(n, 5, repeats);
    for (auto index : {argmax, hand}) {
      const int64_t k = index.test.cols();
      // Gather of the input by the argmax is the pooled output itself.
      auto dst = h.Random(n, k + 2, 4);
      h.test().GatherIndexed(X.test, index.test, dst.Cols(2, k).test);
      h.ref().GatherIndexed(X.ref, index.ref, dst.Cols(2, k).ref);
      h.Expect(dst, kExactTolerance, "GatherIndexed by " + std::to_string(k) + " indices");
      if (k == out) h.Expect({dst.Cols(2, k).test, Y.ref}, kExactTolerance, "Gather by argmax = Y");

      auto src = h.Random(n, k + 1, 5);
      auto acc = h.Random(n, in + 4, 6);
      for (double beta : {0.5, 0.0}) {
        if (beta == 0) h.Fill(acc, kNaN);
        h.test().ScatterAddIndexed(src.Cols(1, k).test, index.test, T(beta), acc.Cols(3, in).test);
        h.ref().ScatterAddIndexed(src.Cols(1, k).ref, index.ref, beta, acc.Cols(3, in).ref);
        h.Expect(
            acc, kReductionTolerance,
            "ScatterAddIndexed by " + std::to_string(k) + " indices, beta " + std::to_string(beta));
      }
    }
  });
}

TEST_P(Conformance, AvgPoolAndAdjoint) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    const int64_t n = 5;
    for (const WindowGeometry& g : PoolingGeometries()) {
      const int64_t in = g.in_size(), out = g.channels * g.positions();
      auto X = h.Random(n, in + 2, 1 + in);
      auto Y = h.Random(n, out + 3, 2);
      h.test().AvgPool(g, X.Cols(1, in).test, Y.Cols(2, out).test);
      h.ref().AvgPool(g, X.Cols(1, in).ref, Y.Cols(2, out).ref);
      h.Expect(Y, kReductionTolerance, "AvgPool " + Describe(g));
      for (double beta : {-0.75, 0.0}) {
        if (beta == 0) h.Fill(X, kNaN);
        h.test().AvgPoolAdjoint(g, Y.Cols(2, out).test, T(beta), X.Cols(1, in).test);
        h.ref().AvgPoolAdjoint(g, Y.Cols(2, out).ref, beta, X.Cols(1, in).ref);
        h.Expect(X, kReductionTolerance,
                 "AvgPoolAdjoint " + Describe(g) + " beta " + std::to_string(beta));
      }
    }
  });
}

// --- embedding bags -------------------------------------------------------------------------

// Sums of at most L table rows (or L weighted rows of δ per table row, for the adjoint) in
// position order on every backend, one division or one product per term: a few roundings of
// values of the output's size.
constexpr Tolerance kEmbeddingTolerance{1e-14, 1e-6};

// count × L ids over num_embeddings = num that exercise every rule: row 0 is all padding,
// row 1 repeats one id (it must count L times), row 2 mixes padding and a repeated id, the
// rest are random ids with some padding, and id 0 and num − 1 both occur.
std::vector<double> TestTokenIds(int64_t count, int64_t length, int64_t num, int64_t padding_idx,
                                 uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> ids(count * length);
  const double pad = padding_idx >= 0 ? double(padding_idx) : 0.0;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t l = 0; l < length; ++l) {
      double id = double(rng() % num);
      if (i == 0) id = pad;
      if (i == 1) id = double(num - 1);
      if (i == 2) id = l % 2 ? pad : 3.0;
      if (i == 3 && l == 0) id = 0.0;
      if (i > 3 && rng() % 4 == 0) id = pad;
      ids[i * length + l] = id;
    }
  return ids;
}

// Both modes, with and without padding: out (a strided view) against the CPU f64.
TEST_P(Conformance, EmbeddingBag) {
  ForCandidate(GetParam(), [](auto& h) {
    const int64_t count = 37, length = 9, num = 23, dim = 11;
    for (int64_t padding_idx : {int64_t{-1}, int64_t{5}})
      for (bool mean : {false, true}) {
        auto ids = h.FromHost(count, length, TestTokenIds(count, length, num, padding_idx, 7));
        auto table = h.Random(num, dim + 2, 8);
        auto out = h.Random(count, dim + 3, 9);
        h.test().EmbeddingBag(ids.test, table.Cols(1, dim).test, padding_idx, mean,
                              out.Cols(2, dim).test);
        h.ref().EmbeddingBag(ids.ref, table.Cols(1, dim).ref, padding_idx, mean,
                             out.Cols(2, dim).ref);
        h.Expect(out, kEmbeddingTolerance,
                 "EmbeddingBag padding " + std::to_string(padding_idx) + (mean ? " mean" : " sum"));
      }
  });
}

// The adjoint accumulates into a strided view; the per-example gradients overwrite theirs.
TEST_P(Conformance, EmbeddingBagAdjointAndPerExample) {
  ForCandidate(GetParam(), [](auto& h) {
    const int64_t count = 41, length = 6, num = 13, dim = 5;
    for (int64_t padding_idx : {int64_t{-1}, int64_t{0}})
      for (bool mean : {false, true}) {
        const std::string what =
            " padding " + std::to_string(padding_idx) + (mean ? " mean" : " sum");
        auto ids = h.FromHost(count, length, TestTokenIds(count, length, num, padding_idx, 17));
        auto delta = h.Random(count, dim + 1, 18);
        auto grad = h.Random(num, dim + 4, 19);  // += : the old values must stay
        h.test().EmbeddingBagAdjoint(ids.test, delta.Cols(1, dim).test, padding_idx, mean,
                                     grad.Cols(3, dim).test);
        h.ref().EmbeddingBagAdjoint(ids.ref, delta.Cols(1, dim).ref, padding_idx, mean,
                                    grad.Cols(3, dim).ref);
        h.Expect(grad, kEmbeddingTolerance, "EmbeddingBagAdjoint" + what);
        auto per_example = h.Random(count, num * dim + 3, 20);
        h.test().EmbeddingBagPerExample(ids.test, delta.Cols(1, dim).test, padding_idx, mean,
                                        per_example.Cols(1, num * dim).test);
        h.ref().EmbeddingBagPerExample(ids.ref, delta.Cols(1, dim).ref, padding_idx, mean,
                                       per_example.Cols(1, num * dim).ref);
        h.Expect(per_example, kEmbeddingTolerance, "EmbeddingBagPerExample" + what);
      }
  });
}

// The adjoint is a scatter-add where many bags hit one row: same inputs, same bits.
TEST_P(Conformance, EmbeddingBagAdjointIsReproducible) {
  ForCandidate(GetParam(), [](auto& h) {
    LETHE_HARNESS_TYPES(h);
    const int64_t count = 5000, length = 20, num = 7, dim = 33;  // ~14,000 hits per row
    auto ids = h.FromHost(count, length, TestTokenIds(count, length, num, 2, 27));
    auto delta = h.Random(count, dim, 28);
    auto grad = h.Constant(num, dim, 0);
    h.test().EmbeddingBagAdjoint(ids.test, delta.test, 2, true, grad.test);
    const std::vector<double> first = Read(h.test(), grad.test);
    for (int repeat = 0; repeat < 3; ++repeat) {
      h.test().Fill(grad.test, T(0));
      h.test().EmbeddingBagAdjoint(ids.test, delta.test, 2, true, grad.test);
      EXPECT_EQ(Read(h.test(), grad.test), first);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::ValuesIn(Candidates()), CandidateName);

}  // namespace
}  // namespace lethe::kernels::testing
