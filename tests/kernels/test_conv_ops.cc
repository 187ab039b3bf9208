// The convolution products (Backend::ConvForward, ConvWeightGradient, ConvInputGradient):
//   - on the CPU in f64, the fused implementation against the composition of Im2Col, Gemm,
//     TransposeRows and Col2Im (ComposedConv*, whose pieces test_window_ops.cc holds to the
//     7-loop convolution), on one thread and on two, with and without bias, every beta;
//   - the conformance suite: every other backend (CPU f32, CUDA f64 and f32) against the CPU
//     in f64, the products on strided views.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/kernels/conformance_harness.h"
#include "tests/kernels/window_geometries.h"

namespace lethe::kernels::testing {
namespace {

// Sums of up to a few hundred products in another order: round-off, far below a wrong index.
constexpr Tolerance kConvTolerance{1e-13, 2e-6};
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// The geometries of the window-op tests, one large enough to run in parallel, and the
// digits CNN's two (examples/digits/cnn.json: outputs 8 and 4 wide, the widths the CPU
// copies with a constant trip count), over enough examples for several blocks of the CPU's
// batched GEMMs and a ragged last one (kernels/cpu/cpu_conv_ops.cc), the second in parallel.
std::vector<NamedGeometry> ConvGeometries() {
  std::vector<NamedGeometry> all = WindowGeometries();
  all.push_back({"5x5 on 3x16x16 (parallel)", Geometry(3, 16, 16, 5, 5)});
  all.push_back({"digits conv1: 3x3 padding 1 on 1x8x8", Geometry(1, 8, 8, 3, 3, 1, 1, 1, 1)});
  all.push_back(
      {"digits conv2: 3x3 padding 1 on 6x4x4 (parallel)", Geometry(6, 4, 4, 3, 3, 1, 1, 1, 1)});
  return all;
}
int64_t CountFor(const WindowGeometry& g) {
  if (g.height == 16) return 64;
  if (g.height == 8 && g.width == 8 && g.channels == 1) return 200;
  if (g.height == 4 && g.width == 4 && g.channels == 6) return 301;
  return 3;
}

// Runs every product on `h.test()` and `h.ref()` through `conv` (a callable taking a backend
// and the op's arguments) and compares: forward with and without bias, weight gradient
// with and without db, input gradient; each with beta 0 (over NaN), 1 and -1.5.
template <typename H, typename Test, typename Ref>
void CompareProducts(H& h, Test test_ops, Ref ref_ops) {
  using T = typename H::Scalar;
  for (const auto& [name, g] : ConvGeometries()) {
    const int64_t count = CountFor(g), M = 4, P = g.positions(), K = g.patch_size();
    auto X = h.Random(count, g.in_size() + 2, 80).Cols(1, g.in_size());
    auto W = h.Random(M, K + 1, 81).Cols(1, K);
    auto b = h.Random(1, M, 82);
    auto D = h.Random(count, M * P, 83);
    auto Y = h.Random(count, M * P + 3, 84);
    auto dW = h.Random(M, K + 2, 85);
    auto db = h.Random(1, M, 86);
    auto dX = h.Random(count, g.in_size() + 1, 87);
    for (double beta : {0.0, 1.0, -1.5}) {
      const std::string what = name + " beta " + std::to_string(beta);
      for (bool bias : {false, true}) {
        if (beta == 0) h.Fill(Y, kNaN);
        const auto y = Y.Cols(3, M * P);
        test_ops.Forward(g, X.test, W.test, bias ? b.test : Matrix<T>(), T(beta), y.test);
        ref_ops.Forward(g, X.ref, W.ref, bias ? b.ref : Matrix<double>(), beta, y.ref);
        h.Expect(Y, kConvTolerance, "ConvForward " + what + (bias ? " bias" : ""));

        if (beta == 0) h.Fill(dW, kNaN), h.Fill(db, kNaN);
        const auto w = dW.Cols(2, K);
        test_ops.Weight(g, X.test, D.test, T(beta), w.test, bias ? db.test : Matrix<T>());
        ref_ops.Weight(g, X.ref, D.ref, beta, w.ref, bias ? db.ref : Matrix<double>());
        h.Expect(dW, kConvTolerance, "ConvWeightGradient " + what);
        if (bias) h.Expect(db, kConvTolerance, "ConvWeightGradient db " + what);
      }
      if (beta == 0) h.Fill(dX, kNaN);
      const auto x = dX.Cols(1, g.in_size());
      test_ops.Input(g, D.test, W.test, T(beta), x.test);
      ref_ops.Input(g, D.ref, W.ref, beta, x.ref);
      h.Expect(dX, kConvTolerance, "ConvInputGradient " + what);
    }
  }
}

// The backend's own products (its workspace sized for the largest call).
template <typename T>
struct BackendOps {
  Backend<T>& be;
  Matrix<T> cols, z;
  explicit BackendOps(Backend<T>& backend) : be(backend) {
    cols = be.Allocate(64 * 256, 75), z = be.Allocate(64 * 256, 4);
  }
  void Forward(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& W, const Matrix<T>& b,
               T beta, Matrix<T> Y) {
    be.ConvForward(g, X, W, b, beta, Y, cols.Block(0, X.rows() * g.positions(), g.patch_size()),
                   z.Block(0, X.rows() * g.positions(), W.rows()));
  }
  void Weight(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& D, T beta,
              Matrix<T> dW, Matrix<T> db) {
    be.ConvWeightGradient(g, X, D, beta, dW, db,
                          cols.Block(0, X.rows() * g.positions(), g.patch_size()),
                          z.Block(0, X.rows() * g.positions(), dW.rows()));
  }
  void Input(const WindowGeometry& g, const Matrix<T>& D, const Matrix<T>& W, T beta,
             Matrix<T> dX) {
    be.ConvInputGradient(g, D, W, beta, dX,
                         cols.Block(0, D.rows() * g.positions(), g.patch_size()),
                         z.Block(0, D.rows() * g.positions(), W.rows()));
  }
};

// The composition (Backend's default), on the same backend.
template <typename T>
struct ComposedOps : BackendOps<T> {
  using BackendOps<T>::BackendOps;
  using BackendOps<T>::be;
  using BackendOps<T>::cols;
  using BackendOps<T>::z;
  void Forward(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& W, const Matrix<T>& b,
               T beta, Matrix<T> Y) {
    ComposedConvForward(be, g, X, W, b, beta, Y, cols.Block(0, cols.rows(), g.patch_size()),
                        z.Block(0, z.rows(), W.rows()));
  }
  void Weight(const WindowGeometry& g, const Matrix<T>& X, const Matrix<T>& D, T beta,
              Matrix<T> dW, Matrix<T> db) {
    ComposedConvWeightGradient(be, g, X, D, beta, dW, db, cols.Block(0, cols.rows(), g.patch_size()),
                               z.Block(0, z.rows(), dW.rows()));
  }
  void Input(const WindowGeometry& g, const Matrix<T>& D, const Matrix<T>& W, T beta,
             Matrix<T> dX) {
    ComposedConvInputGradient(be, g, D, W, beta, dX, cols.Block(0, cols.rows(), g.patch_size()),
                              z.Block(0, z.rows(), W.rows()));
  }
};

// The CPU's fused products against the composition, both on the CPU in f64: the harness's
// "test" side is a second CPU f64 backend here, running the fused ops, its reference the
// composed ones. On 1 and 2 threads (a CPU backend sets OpenMP's and Eigen's thread count
// when made: the third one made here sets it for both).
TEST(ConvOps, CpuFusedEqualsComposed) {
  for (int threads : {1, 2}) {
    Harness<double> h(Candidate{DeviceKind::kCpu, false});
    auto set_threads = MakeBackend<double>({DeviceKind::kCpu, threads});
    BackendOps<double> test_ops(h.test());
    ComposedOps<double> ref_ops(h.ref());
    SCOPED_TRACE("threads " + std::to_string(threads));
    CompareProducts(h, test_ops, ref_ops);
  }
}

// The CPU multiplies a block of examples in one GEMM (kernels/cpu/cpu_conv_ops.cc): every
// product must equal the same op run one example at a time (blocks of one) within
// round-off, 1e-13 of the largest value: a column of one example sent to another's place,
// or a block's ragged end, would be off by O(1). Not bit for bit: Eigen's GEMM kernel sums
// a dot product in an order that depends on where its column falls in the register panels.
// On 1 and 2 threads.
void ExpectClose(const std::vector<double>& got, const std::vector<double>& want,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0, worst = 0;
  for (size_t k = 0; k < got.size(); ++k) {
    scale = std::max(scale, std::abs(want[k]));
    worst = std::max(worst, std::abs(got[k] - want[k]));
    if (std::isnan(got[k]) != std::isnan(want[k])) worst = kNaN;
  }
  EXPECT_LE(worst, 1e-13 * scale) << what;
}

TEST(ConvOps, CpuBlocksEqualOneExampleAtATime) {
  for (int threads : {1, 2}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    auto be = MakeBackend<double>({DeviceKind::kCpu, threads});
    for (const auto& [name, g] : ConvGeometries()) {
      SCOPED_TRACE(name);
      const int64_t count = CountFor(g), M = 5, P = g.positions(), K = g.patch_size();
      std::mt19937_64 rng(91);
      std::uniform_real_distribution<double> uniform(-1, 1);
      auto load = [&](int64_t rows, int64_t cols) {
        std::vector<double> v(static_cast<size_t>(rows * cols));
        for (double& x : v) x = uniform(rng);
        Matrix<double> m = be->Allocate(rows, cols);
        be->Upload(v.data(), m);
        return m;
      };
      auto read = [&](const Matrix<double>& m) {
        std::vector<double> v(static_cast<size_t>(m.size()));
        be->Download(m, v.data());
        return v;
      };
      const Matrix<double> X = load(count, g.in_size()), W = load(M, K), b = load(1, M),
                           D = load(count, M * P);
      Matrix<double> cols = be->Allocate(count * P, K), z = be->Allocate(count * P, M);
      auto cols_for = [&](int64_t rows) { return cols.Block(0, rows * P, K); };
      auto z_for = [&](int64_t rows) { return z.Block(0, rows * P, M); };
      for (double beta : {0.0, -1.5}) {
        const std::string b_is = " beta " + std::to_string(beta);
        Matrix<double> all = load(count, M * P), one = be->Allocate(count, M * P);
        be->Copy(all, one);
        be->ConvForward(g, X, W, b, beta, all, cols_for(count), z_for(count));
        for (int64_t i = 0; i < count; ++i)
          be->ConvForward(g, X.Rows(i, 1), W, b, beta, one.Rows(i, 1), cols_for(1), z_for(1));
        ExpectClose(read(all), read(one), "ConvForward" + b_is);

        Matrix<double> dx_all = load(count, g.in_size()), dx_one = be->Allocate(count, g.in_size());
        be->Copy(dx_all, dx_one);
        be->ConvInputGradient(g, D, W, beta, dx_all, cols_for(count), z_for(count));
        for (int64_t i = 0; i < count; ++i)
          be->ConvInputGradient(g, D.Rows(i, 1), W, beta, dx_one.Rows(i, 1), cols_for(1),
                                z_for(1));
        ExpectClose(read(dx_all), read(dx_one), "ConvInputGradient" + b_is);
      }
      Matrix<double> dw_all = be->Allocate(M, K), db_all = be->Allocate(1, M);
      Matrix<double> dw_one = be->Allocate(M, K), db_one = be->Allocate(1, M);
      be->ConvWeightGradient(g, X, D, 0.0, dw_all, db_all, cols_for(count), z_for(count));
      be->Fill(dw_one, 0.0), be->Fill(db_one, 0.0);
      for (int64_t i = 0; i < count; ++i)
        be->ConvWeightGradient(g, X.Rows(i, 1), D.Rows(i, 1), 1.0, dw_one, db_one, cols_for(1),
                               z_for(1));
      ExpectClose(read(dw_all), read(dw_one), "ConvWeightGradient dW");
      ExpectClose(read(db_all), read(db_one), "ConvWeightGradient db");
    }
  }
}

class ConvConformance : public BackendTest {};

TEST_P(ConvConformance, ConvProducts) {
  ForCandidate(GetParam(), [](auto& h) {
    using T = typename std::decay_t<decltype(h)>::Scalar;
    BackendOps<T> test_ops(h.test());
    BackendOps<double> ref_ops(h.ref());
    CompareProducts(h, test_ops, ref_ops);
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, ConvConformance, ::testing::ValuesIn(Candidates()),
                         CandidateName);

}  // namespace
}  // namespace lethe::kernels::testing
