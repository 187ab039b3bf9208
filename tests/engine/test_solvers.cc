// Every linear solver on small problems whose operator is formed explicitly (applied to
// the identity) and solved by Eigen in the test: each solver is checked by its residual
// and against that explicit solution, and each failure mode by its termination.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <random>
#include <tuple>

#include "engine/inverse_hvp.h"
#include "engine/kfac_preconditioner.h"
#include "engine/solvers/cg.h"
#include "engine/solvers/direct.h"
#include "engine/solvers/lanczos.h"
#include "engine/solvers/lissa.h"
#include "tests/engine/test_problems.h"

namespace lethe {
namespace {

using Matrix = kernels::Matrix<double>;

// Cholesky/eigensolves in double on condition numbers ≲ 1e4: errors ~1e-12.
constexpr double kExactTolerance = 1e-10;
// Full-rank Lanczos: Ritz vectors from a p × p tridiagonal eigensolve; slightly looser.
constexpr double kLanczosTolerance = 1e-8;
// LiSSA is a truncated, stochastic series: 1% is what enough depth and repeats buy.
constexpr double kLissaTolerance = 1e-2;
// f32 products: ~1e-7 per operation, amplified by the condition number (~1e2 here).
constexpr double kFloatTolerance = 1e-4;

struct Problem {
  std::unique_ptr<kernels::Backend<double>> backend;
  io::Dataset data;
  Model model;
  std::unique_ptr<Objective<double>> objective;
  Matrix theta;
  int64_t p = 0;
};

// batch_size 16 < n: the objective's batching (and a partial last batch) is exercised.
Problem MakeProblem(LossKind loss, int hidden, double l2, int64_t n, uint64_t seed,
                    int zero_features = 0) {
  Problem pr;
  pr.backend = kernels::MakeBackend<double>({});
  pr.data = testing::RandomData(loss, n, 5, 3, seed);
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < zero_features; ++j) pr.data.X[i * 5 + j] = 0;
  pr.model = testing::RandomModel(testing::MlpSpec(loss, Activation::kTanh, hidden, l2, 1), pr.data,
                                  seed + 1);
  pr.objective = std::make_unique<Objective<double>>(
      *pr.backend, pr.model.arch, UploadData(*pr.backend, pr.data), ObjectiveOptions{16});
  pr.p = pr.objective->num_params();
  pr.theta = pr.backend->Allocate(1, pr.p);
  pr.backend->Upload(pr.model.theta.data(), pr.theta);
  return pr;
}
Problem Logistic(int zero_features = 0) {
  return MakeProblem(LossKind::kLogistic, 0, 0.05, 40, 11, zero_features);
}
Problem Mlp() { return MakeProblem(LossKind::kCrossEntropy, 4, 1e-3, 30, 21); }

// Rows are right-hand sides, as in the solvers.
Eigen::MatrixXd Download(kernels::Backend<double>& be, const Matrix& m) {
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> h(m.rows(), m.cols());
  be.Download(m, h.data());
  return h;
}
Matrix Upload(kernels::Backend<double>& be, const Eigen::MatrixXd& h) {
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> r = h;
  Matrix m = be.Allocate(h.rows(), h.cols());
  be.Upload(r.data(), m);
  return m;
}
Eigen::MatrixXd RandomRows(int64_t m, int64_t p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd h(m, p);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < p; ++j) h(i, j) = normal(rng);
  return h;
}
// A as a matrix: row j = A e_j.
Eigen::MatrixXd Explicit(LinearOperator<double>& A) {
  kernels::Backend<double>& be = A.backend();
  Matrix I = Upload(be, Eigen::MatrixXd::Identity(A.size(), A.size()));
  Matrix out = be.Allocate(A.size(), A.size());
  A.Apply(I, out);
  return Download(be, out);
}
// max over rows of ‖x − x*‖ / ‖x*‖
double RelativeError(const Eigen::MatrixXd& x, const Eigen::MatrixXd& want) {
  double worst = 0;
  for (int64_t i = 0; i < x.rows(); ++i)
    worst = std::max(worst, (x.row(i) - want.row(i)).norm() / want.row(i).norm());
  return worst;
}
// Rows of B solved by Eigen against the explicit (symmetric) A.
Eigen::MatrixXd ExplicitSolve(const Eigen::MatrixXd& A, const Eigen::MatrixXd& B) {
  return A.fullPivLu().solve(B.transpose()).transpose();
}

// ---- direct ---------------------------------------------------------------------------

TEST(Direct, MatchesExplicitSolveOnLogisticAndMlp) {
  for (bool mlp : {false, true}) {
    Problem pr = mlp ? Mlp() : Logistic();
    // The MLP's Hessian is indefinite: solve with its Gauss-Newton matrix (PSD) + damping.
    CurvatureOperator<double> A(*pr.objective, pr.theta,
                                mlp ? Curvature::kGaussNewton : Curvature::kHessian,
                                mlp ? 1e-2 : 0.0);
    const Eigen::MatrixXd b = RandomRows(3, pr.p, 1);
    Matrix X = pr.backend->Allocate(3, pr.p);
    // block_size 4 < p: the operator is formed block by block, with a partial last block.
    const SolveSummary s = DirectSolve(A, Upload(*pr.backend, b), X, DirectOptions{4});
    ASSERT_EQ(s.termination, Termination::kConverged) << s.message;
    EXPECT_LE(s.relative_residual, kExactTolerance);
    EXPECT_EQ(s.relative_residuals.size(), 3u);
    EXPECT_LE(RelativeError(Download(*pr.backend, X), ExplicitSolve(Explicit(A), b)),
              kExactTolerance);
  }
}

TEST(Direct, FactorizationIsReusableAndSolvesInPlace) {
  Problem pr = Logistic();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  DirectFactorization<double> f;
  ASSERT_TRUE(f.Factorize(A, {}).converged());
  const Eigen::MatrixXd H = Explicit(A);
  for (uint64_t seed : {2, 3}) {
    const Eigen::MatrixXd b = RandomRows(5, pr.p, seed);
    Matrix X = Upload(*pr.backend, b);
    f.Solve(X, X);  // X aliases B
    EXPECT_LE(RelativeError(Download(*pr.backend, X), ExplicitSolve(H, b)), kExactTolerance);
  }
}

TEST(Direct, ReportsNegativeCurvatureWithSmallestEigenvalue) {
  Problem pr = Mlp();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  const Eigen::MatrixXd H = Explicit(A);
  const double mu = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(H).eigenvalues()(0);
  ASSERT_LT(mu, 0) << "the test needs an indefinite Hessian";
  DirectFactorization<double> f;
  const SolveSummary s = f.Factorize(A, {});
  EXPECT_EQ(s.termination, Termination::kNegativeCurvature);
  EXPECT_FALSE(f.factorized());
  EXPECT_NEAR(f.smallest_eigenvalue(), mu, kExactTolerance * H.norm());
  EXPECT_NE(s.message.find("not positive definite: smallest eigenvalue"), std::string::npos)
      << s.message;
  EXPECT_NE(s.message.find("--damping"), std::string::npos) << s.message;
  // DirectSolve returns x = 0 (residual 1) rather than a wrong x.
  Matrix X = pr.backend->Allocate(1, pr.p);
  const SolveSummary d = DirectSolve(A, Upload(*pr.backend, RandomRows(1, pr.p, 4)), X, {});
  EXPECT_EQ(d.termination, Termination::kNegativeCurvature);
  EXPECT_DOUBLE_EQ(d.relative_residual, 1.0);
}

TEST(Direct, FloatSolveHasSmallResidual) {
  const io::Dataset data = testing::RandomData(LossKind::kLogistic, 40, 5, 2, 11);
  const Model model = testing::RandomModel(
      testing::MlpSpec(LossKind::kLogistic, Activation::kTanh, 0, 0.05), data, 12);
  auto be = kernels::MakeBackend<float>({});
  Objective<float> objective(*be, model.arch, UploadData(*be, data));
  const int64_t p = objective.num_params();
  std::vector<float> theta(model.theta.begin(), model.theta.end()), b(p, 1.0f), x(p);
  kernels::Matrix<float> T = be->Allocate(1, p), B = be->Allocate(1, p), X = be->Allocate(1, p);
  be->Upload(theta.data(), T);
  be->Upload(b.data(), B);
  CurvatureOperator<float> A(objective, T, Curvature::kHessian, 0.0);
  const SolveSummary s = DirectSolve(A, B, X, {});
  ASSERT_TRUE(s.converged()) << s.message;
  EXPECT_LE(s.relative_residual, kFloatTolerance);
}

// ---- cg -------------------------------------------------------------------------------

TEST(Cg, ReachesToleranceAndMatchesExplicitSolve) {
  Problem pr = Logistic();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  const Eigen::MatrixXd b = RandomRows(3, pr.p, 5);
  Matrix X = pr.backend->Zeros(3, pr.p);
  CgOptions options;
  options.relative_tolerance = 1e-10;
  const SolveSummary s = ConjugateGradient(A, Upload(*pr.backend, b), X, options);
  ASSERT_TRUE(s.converged()) << s.message;
  // The true residual may exceed the recursive one by rounding, a few × ε·κ.
  EXPECT_LE(s.relative_residual, 10 * options.relative_tolerance);
  EXPECT_LE(RelativeError(Download(*pr.backend, X), ExplicitSolve(Explicit(A), b)),
            kLanczosTolerance);
}

// Counts the directions it is applied to (rows of V over all calls).
class CountingOperator final : public LinearOperator<double> {
 public:
  explicit CountingOperator(LinearOperator<double>& inner) : inner_(inner) {}
  int64_t size() const override { return inner_.size(); }
  kernels::Backend<double>& backend() const override { return inner_.backend(); }
  void Apply(const Matrix& V, Matrix out) override {
    directions += V.rows();
    inner_.Apply(V, out);
  }
  int64_t directions = 0;

 private:
  LinearOperator<double>& inner_;
};

// A right-hand side that has converged stops costing applications of A: a zero one never
// costs any, an eigenvector of A converges in one iteration, and each right-hand side is
// applied exactly as many times as its own iteration count (plus the final true residual),
// with the solutions returned in the caller's order.
TEST(Cg, ConvergedRightHandSidesLeaveTheProducts) {
  Problem pr = Logistic();
  CurvatureOperator<double> H(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  const Eigen::MatrixXd A = Explicit(H);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(0.5 * (A + A.transpose()));
  Eigen::MatrixXd b(4, pr.p);
  b.row(0) = RandomRows(1, pr.p, 7);
  b.row(1).setZero();
  b.row(2) = eig.eigenvectors().col(pr.p / 2).transpose();
  b.row(3) = RandomRows(1, pr.p, 8);
  CountingOperator counted(H);
  Matrix X = pr.backend->Zeros(4, pr.p);
  CgOptions options;
  options.relative_tolerance = 1e-10;
  const SolveSummary s = ConjugateGradient(counted, Upload(*pr.backend, b), X, options);
  ASSERT_TRUE(s.converged()) << s.message;
  ASSERT_EQ(s.rhs_iterations.size(), 4u);
  EXPECT_EQ(s.rhs_iterations[1], 0);
  EXPECT_EQ(s.rhs_iterations[2], 1);
  EXPECT_GT(s.rhs_iterations[0], 2);
  EXPECT_GT(s.rhs_iterations[3], 2);
  EXPECT_EQ(s.iterations, std::max(s.rhs_iterations[0], s.rhs_iterations[3]));
  int64_t want = 4;  // the final residual's application, all rows
  for (int it : s.rhs_iterations) want += it;
  EXPECT_EQ(counted.directions, want);
  const Eigen::MatrixXd x = Download(*pr.backend, X);
  EXPECT_EQ(x.row(1).norm(), 0.0);
  const Eigen::MatrixXd want_x = ExplicitSolve(A, b);
  for (int r : {0, 2, 3})
    EXPECT_LE((x.row(r) - want_x.row(r)).norm() / want_x.row(r).norm(), kLanczosTolerance) << r;
  EXPECT_LE(s.relative_residual, 10 * options.relative_tolerance);
}

// Without the final check (CgOptions::check_residual off): the same iterates and solution,
// bit for bit, one application of A fewer per right-hand side, and no residual reported.
TEST(Cg, WithoutTheResidualCheckSavesItsProductOnly) {
  Problem pr = Logistic();
  CurvatureOperator<double> H(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  const Eigen::MatrixXd b = RandomRows(2, pr.p, 9);
  CgOptions options;
  options.relative_tolerance = 1e-8;
  CountingOperator checked(H), unchecked(H);
  Matrix X1 = pr.backend->Zeros(2, pr.p), X2 = pr.backend->Zeros(2, pr.p);
  const SolveSummary s1 = ConjugateGradient(checked, Upload(*pr.backend, b), X1, options);
  options.check_residual = false;
  const SolveSummary s2 = ConjugateGradient(unchecked, Upload(*pr.backend, b), X2, options);
  ASSERT_TRUE(s1.converged() && s2.converged());
  EXPECT_EQ(s1.iterations, s2.iterations);
  EXPECT_EQ(checked.directions, unchecked.directions + 2);
  EXPECT_TRUE(s1.residual_computed());
  EXPECT_FALSE(s2.residual_computed());
  EXPECT_TRUE(std::isnan(s2.relative_residual));
  EXPECT_EQ(Download(*pr.backend, X1), Download(*pr.backend, X2));
}

TEST(Cg, ReportsNegativeCurvatureOnIndefiniteHessian) {
  Problem pr = Mlp();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  Matrix X = pr.backend->Zeros(1, pr.p);
  const SolveSummary s =
      ConjugateGradient(A, Upload(*pr.backend, RandomRows(1, pr.p, 6)), X, CgOptions{});
  EXPECT_EQ(s.termination, Termination::kNegativeCurvature) << s.message;
}

// ---- cg with the Kronecker-factored preconditioner ------------------------------------

// With one example the Kronecker factorisation of a layer's Gauss-Newton block is exact:
// G_ll = (Jᵀ A J) ⊗ ã ãᵀ. So for v supported on layer l, M⁻¹ applied to layer l's part of
// (G + λI) v must return v exactly: this checks Γ (through activations and a layer without
// bias), S (with and without the bias column), the eigendecompositions and the shift.
TEST(Kfac, ExactOnOneExampleForEveryLayer) {
  for (LossKind loss : {LossKind::kCrossEntropy, LossKind::kMse, LossKind::kLogistic}) {
    SCOPED_TRACE(static_cast<int>(loss));
    auto backend = kernels::MakeBackend<double>({});
    const io::Dataset data = testing::RandomData(loss, 1, 5, 3, 31);
    const Model model =
        testing::RandomModel(testing::MlpSpec(loss, Activation::kTanh, 4, 1e-2, 3), data, 32);
    Objective<double> objective(*backend, model.arch, UploadData(*backend, data));
    const int64_t p = objective.num_params();
    Matrix theta = Upload(*backend, Eigen::Map<const Eigen::RowVectorXd>(model.theta.data(), p));
    const double damping = 0.1;
    CurvatureOperator<double> G(objective, theta, Curvature::kGaussNewton, damping);
    KfacPreconditioner<double> M(objective, theta, damping);
    int tested = 0;
    for (const LayerShape& layer : model.arch.layers) {
      if (layer.tensors.empty()) continue;
      Eigen::RowVectorXd mask = Eigen::RowVectorXd::Zero(p);
      for (const TensorInfo& t : layer.tensors) mask.segment(t.offset, t.size()).setOnes();
      const Eigen::RowVectorXd v = RandomRows(1, p, 40 + tested).cwiseProduct(mask);
      Matrix gv = backend->Allocate(1, p), back = backend->Allocate(1, p);
      G.Apply(Upload(*backend, v), gv);
      const Eigen::RowVectorXd block = Download(*backend, gv).cwiseProduct(mask);
      M.Apply(Upload(*backend, block), back);
      EXPECT_LE((Download(*backend, back) - v).norm() / v.norm(), kExactTolerance)
          << "layer with weight at " << layer.tensors[0].offset;
      ++tested;
    }
    EXPECT_EQ(tested, 4);
  }
}

// M⁻¹ applied to several directions at once takes their input-side products in groups
// (ObjectiveOptions::group_elements); any grouping, a partial last group included, must give
// each row what applying M⁻¹ to that row alone gives.
TEST(Kfac, GroupedApplicationEqualsOneRowAtATime) {
  auto backend = kernels::MakeBackend<double>({});
  const io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 20, 5, 3, 61);
  const Model model = testing::RandomModel(
      testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 4, 1e-2), data, 62);
  // group_elements 48: groups of 2, 2 and 3 directions at the three layers ([W | b] of
  // 4 × 6, 4 × 5, 3 × 5), so 5 directions end in a partial group at every layer.
  Objective<double> objective(*backend, model.arch, UploadData(*backend, data),
                              ObjectiveOptions{.batch_size = 8, .group_elements = 48});
  const int64_t p = objective.num_params();
  Matrix theta = Upload(*backend, Eigen::Map<const Eigen::RowVectorXd>(model.theta.data(), p));
  KfacPreconditioner<double> M(objective, theta, 0.1);
  const Eigen::MatrixXd v = RandomRows(5, p, 63);
  Matrix all = backend->Allocate(5, p), one = backend->Allocate(1, p);
  M.Apply(Upload(*backend, v), all);
  const Eigen::MatrixXd grouped = Download(*backend, all);
  for (int64_t r = 0; r < 5; ++r) {
    M.Apply(Upload(*backend, v.row(r)), one);
    EXPECT_LE((Download(*backend, one).row(0) - grouped.row(r)).norm(),
              1e-13 * grouped.row(r).norm())
        << "row " << r;
  }
}

// A stream of requests saves the preconditioner (KfacState) and rebuilds it at the next
// request (tools/lethe/stream_cache.h): the rebuilt one must apply exactly as the original,
// and a state that does not fit (another λ, another layout) must never be used.
TEST(Kfac, StateRebuildsTheSamePreconditionerAndIsUsedOnlyWhereItFits) {
  auto backend = kernels::MakeBackend<double>({});
  const io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 20, 5, 3, 71);
  const Model model = testing::RandomModel(
      testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 4, 1e-2), data, 72);
  Objective<double> objective(*backend, model.arch, UploadData(*backend, data));
  const int64_t p = objective.num_params();
  Matrix theta = Upload(*backend, Eigen::Map<const Eigen::RowVectorXd>(model.theta.data(), p));
  KfacPreconditioner<double> M(objective, theta, 0.1);
  const KfacState state = M.State(0.1, objective.l2());
  ASSERT_EQ(state.layers.size(), 3u);
  EXPECT_TRUE(state.Fits(objective, 0.1));
  EXPECT_FALSE(state.Fits(objective, 0.2));
  KfacState wrong = state;
  wrong.layers[1].block.in += 1;
  EXPECT_FALSE(wrong.Fits(objective, 0.1));
  KfacPreconditioner<double> rebuilt(objective, state);
  const Eigen::MatrixXd v = RandomRows(3, p, 73);
  Matrix a = backend->Allocate(3, p), b = backend->Allocate(3, p);
  M.Apply(Upload(*backend, v), a);
  rebuilt.Apply(Upload(*backend, v), b);
  EXPECT_EQ((Download(*backend, a) - Download(*backend, b)).norm(), 0.0);
  // Through InverseHvp: reused where it fits (and said so), rebuilt where it does not; the
  // solve's answer is the same either way (CG stops on the true residual).
  InverseHvpOptions o;
  o.solver = SolverKind::kCg;
  o.preconditioner = PreconditionerKind::kKfac;
  o.cg.relative_tolerance = 1e-12;
  o.damping = 0.1;
  o.kfac_reuse = &state;
  KfacState exported;
  o.kfac_export = &exported;
  Matrix x1 = backend->Allocate(1, p), x2 = backend->Allocate(1, p);
  const Matrix rhs = Upload(*backend, RandomRows(1, p, 74));
  const SolveSummary s1 = InverseHvp<double>(objective, theta, o).Solve(rhs, x1);
  EXPECT_EQ(s1.preconditioner, "kfac (cached)");
  EXPECT_EQ(exported.layers[0].in_vectors, state.layers[0].in_vectors);
  o.damping = 0.2;
  const SolveSummary s2 = InverseHvp<double>(objective, theta, o).Solve(rhs, x2);
  EXPECT_EQ(s2.preconditioner, "kfac");
  EXPECT_EQ(exported.damping, 0.2);
  o.kfac_reuse = nullptr;
  Matrix x3 = backend->Allocate(1, p);
  o.damping = 0.1;
  InverseHvp<double>(objective, theta, o).Solve(rhs, x3);
  EXPECT_LE(RelativeError(Download(*backend, x1), Download(*backend, x3)), 1e-10);
}

// Beyond max_examples the factors come from evenly spread blocks of rows: they must equal
// the factors of an objective over exactly those rows.
TEST(Kfac, FactorsFromAtMostMaxExamplesComeFromEvenlySpreadBlocks) {
  auto backend = kernels::MakeBackend<double>({});
  const io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 40, 5, 3, 64);
  const Model model = testing::RandomModel(
      testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 4, 1e-2), data, 65);
  const int64_t p = model.arch.num_params;
  Objective<double> all(*backend, model.arch, UploadData(*backend, data), ObjectiveOptions{16});
  Matrix theta = Upload(*backend, Eigen::Map<const Eigen::RowVectorXd>(model.theta.data(), p));
  // max 20: blocks of 16 (the batch), two of them, starting at rows 0 and 40·1/2 = 20;
  // max 8: one block of 8 rows; max 40: every row.
  const std::vector<std::pair<int64_t, std::vector<int64_t>>> cases = {
      {20, {0, 16, 20, 16}}, {8, {0, 8}}, {40, {0, 40}}};
  for (const auto& [max_examples, blocks] : cases) {
    SCOPED_TRACE(max_examples);
    std::vector<int64_t> rows;
    for (size_t b = 0; b < blocks.size(); b += 2)
      for (int64_t i = 0; i < blocks[b + 1]; ++i) rows.push_back(blocks[b] + i);
    Objective<double> subset(*backend, model.arch, UploadData(*backend, data, rows),
                             ObjectiveOptions{16});
    std::vector<Matrix> g_got, s_got, g_want, s_want;
    all.KroneckerFactors(theta, &g_got, &s_got, max_examples);
    subset.KroneckerFactors(theta, &g_want, &s_want);
    ASSERT_EQ(g_got.size(), g_want.size());
    ASSERT_EQ(g_got.size(), 3u);  // three linear layers
    for (size_t l = 0; l < g_got.size(); ++l) {
      EXPECT_LE(RelativeError(Download(*backend, g_got[l]), Download(*backend, g_want[l])), 1e-14);
      EXPECT_LE(RelativeError(Download(*backend, s_got[l]), Download(*backend, s_want[l])), 1e-14);
    }
  }
}

// A softmax regression (300 × 30, 4 classes) on features spread over four orders of
// magnitude (as blank and busy pixels are): κ(A) ≈ 3e6. θ is the random model's weights
// times `weight_scale`.
struct BadlyConditionedSoftmax {
  std::unique_ptr<kernels::Backend<double>> backend = kernels::MakeBackend<double>({});
  std::unique_ptr<Objective<double>> objective;
  Matrix theta;
  int64_t p = 0;
  explicit BadlyConditionedSoftmax(double weight_scale) {
    io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 300, 30, 4, 51);
    for (int64_t i = 0; i < data.n; ++i)
      for (int64_t j = 0; j < data.d; ++j) data.X[i * data.d + j] *= std::pow(1.35, j) / 100;
    const Model model = testing::RandomModel(
        testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 0, 1e-4), data, 52);
    objective = std::make_unique<Objective<double>>(*backend, model.arch,
                                                    UploadData(*backend, data), ObjectiveOptions{64});
    p = objective->num_params();
    theta = Upload(*backend,
                   weight_scale * Eigen::Map<const Eigen::RowVectorXd>(model.theta.data(), p));
  }
};

// A softmax regression on features spread over four orders of magnitude (as blank and busy
// pixels are): preconditioned CG reaches the same answer in a fraction of the iterations.
TEST(Kfac, PreconditionedCgSolvesBadlyConditionedProblemsInFewerIterations) {
  BadlyConditionedSoftmax problem(1.0);
  kernels::Backend<double>* backend = problem.backend.get();
  Objective<double>& objective = *problem.objective;
  const int64_t p = problem.p;
  Matrix theta = problem.theta;
  CurvatureOperator<double> A(objective, theta, Curvature::kHessian, 0.0);
  KfacPreconditioner<double> M(objective, theta, 0.0);
  const Eigen::MatrixXd b = RandomRows(2, p, 53);
  const Eigen::MatrixXd want = ExplicitSolve(Explicit(A), b);
  CgOptions options;
  options.relative_tolerance = 1e-10;
  options.max_iterations = 5000;
  int iterations[2];
  for (int pc : {0, 1}) {
    Matrix X = backend->Zeros(2, p);
    const SolveSummary s = ConjugateGradient(A, Upload(*backend, b), X, options, pc ? &M : nullptr);
    ASSERT_TRUE(s.converged()) << s.message;
    EXPECT_LE(s.relative_residual, 10 * options.relative_tolerance);
    EXPECT_LE(RelativeError(Download(*backend, X), want), 1e-6) << "preconditioned: " << pc;
    iterations[pc] = s.iterations;
  }
  EXPECT_LT(2 * iterations[1], iterations[0])
      << "plain " << iterations[0] << ", preconditioned " << iterations[1];
}

// The default (auto) preconditions CG with K-FAC for a model with one linear layer only:
// the summary says which was used.
TEST(Kfac, AutoPreconditionsOnlyModelsWithOneLinearLayer) {
  for (bool mlp : {false, true}) {
    Problem pr = mlp ? Mlp() : Logistic();
    InverseHvpOptions o;
    o.solver = SolverKind::kCg;
    o.curvature = Curvature::kGaussNewton;
    o.damping = 1e-2;
    InverseHvp<double> inverse(*pr.objective, pr.theta, o);
    Matrix X = pr.backend->Zeros(1, pr.p);
    const SolveSummary s = inverse.Solve(Upload(*pr.backend, RandomRows(1, pr.p, 60)), X);
    ASSERT_TRUE(s.converged()) << s.message;
    EXPECT_EQ(s.preconditioner, mlp ? "" : "kfac");
  }
}

// ---- lissa ----------------------------------------------------------------------------

TEST(Lissa, MinibatchCurvatureAveragesToFullCurvature) {
  Problem pr = Logistic();
  const int64_t n = pr.objective->num_examples();
  MinibatchCurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.3, 7);
  const Matrix V = Upload(*pr.backend, RandomRows(2, pr.p, 8));
  Matrix full = pr.backend->Allocate(2, pr.p), part = pr.backend->Allocate(2, pr.p);
  A.Apply(V, full);
  // (k/n)·A_[0,k) + ((n−k)/n)·A_[k,n) = A: the 1/count weights and l2 + damping per batch.
  const int64_t k = 13;
  Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(2, pr.p);
  A.ApplyBatch(V, part, 0, k);
  sum += double(k) / n * Download(*pr.backend, part);
  A.ApplyBatch(V, part, k, n - k);
  sum += double(n - k) / n * Download(*pr.backend, part);
  EXPECT_LE(RelativeError(sum, Download(*pr.backend, full)), kExactTolerance);
}

TEST(Lissa, FullBatchApproachesExplicitSolve) {
  Problem pr = Logistic();
  MinibatchCurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0, 1);
  const Eigen::MatrixXd b = RandomRows(2, pr.p, 9);
  LissaOptions options;  // the default batch is all n = 40: deterministic Richardson
  options.depth = 1000;
  options.relative_tolerance = 1e-4;
  Matrix X = pr.backend->Allocate(2, pr.p);
  const SolveSummary s = Lissa(A, Upload(*pr.backend, b), X, options);
  ASSERT_TRUE(s.converged()) << s.message;
  EXPECT_LE(RelativeError(Download(*pr.backend, X), ExplicitSolve(Explicit(A), b)),
            kLissaTolerance);
  EXPECT_LE(s.relative_residual, kLissaTolerance);
}

TEST(Lissa, MinibatchEstimateIsUnbiased) {
  // E[A_batch] = A, batches independent ⇒ E[h_J] = the full-batch h_J: the average of
  // many minibatch recursions (windows that wrap around the end included) approaches the
  // deterministic one, the difference falling like 1/√repeats.
  Problem pr = Logistic();
  MinibatchCurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0, 1);
  const Matrix b = Upload(*pr.backend, RandomRows(1, pr.p, 9));
  LissaOptions options;
  options.depth = 30;
  options.scale = 1.0;
  options.relative_tolerance = 1e-15;  // all 30 steps: no early stop of the full batch
  Matrix full = pr.backend->Allocate(1, pr.p), mean = pr.backend->Allocate(1, pr.p);
  ASSERT_EQ(Lissa(A, b, full, options).termination, Termination::kMaxIterations);
  options.batch_size = 15;
  options.repeats = 1;
  const double one = RelativeError((Lissa(A, b, mean, options), Download(*pr.backend, mean)),
                                   Download(*pr.backend, full));
  options.repeats = 3200;  // expected difference ≈ one/√3200 ≈ 0.0035
  ASSERT_NE(Lissa(A, b, mean, options).termination, Termination::kDiverged);
  const double many = RelativeError(Download(*pr.backend, mean), Download(*pr.backend, full));
  EXPECT_GT(one, 4 * kLissaTolerance) << "the test needs noisy minibatches";
  EXPECT_LE(many, kLissaTolerance);
}

TEST(Lissa, DetectsDivergenceWhenScaleIsTooSmall) {
  Problem pr = Logistic();
  MinibatchCurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0, 1);
  const double top =
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(Explicit(A)).eigenvalues().maxCoeff();
  LissaOptions options;
  options.scale = 0.3 * top;  // below λ_max/2: |1 − λ_max/s| > 1
  Matrix X = pr.backend->Allocate(1, pr.p);
  const SolveSummary s = Lissa(A, Upload(*pr.backend, RandomRows(1, pr.p, 10)), X, options);
  EXPECT_EQ(s.termination, Termination::kDiverged);
  EXPECT_NE(s.message.find("increase --lissa-scale (now "), std::string::npos) << s.message;
  EXPECT_NE(s.message.find("diverged at step"), std::string::npos) << s.message;
  EXPECT_LT(s.iterations, options.depth);
}

// The summary's residual is that of the returned x, recomputed: ‖A x − b‖ / ‖b‖ per row
// with A formed explicitly in the test.
TEST(Lissa, ResidualInSummaryEqualsExplicitRecomputation) {
  Problem pr = Logistic();
  MinibatchCurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.1, 1);
  const Eigen::MatrixXd b = RandomRows(3, pr.p, 15), H = Explicit(A);
  for (int64_t batch : {int64_t{15}, int64_t{1} << 20}) {
    LissaOptions options;
    options.depth = 40;
    options.batch_size = batch;
    Matrix X = pr.backend->Allocate(3, pr.p);
    const SolveSummary s = Lissa(A, Upload(*pr.backend, b), X, options);
    const Eigen::MatrixXd x = Download(*pr.backend, X);
    ASSERT_EQ(s.relative_residuals.size(), 3u);
    double worst = 0;
    for (int64_t r = 0; r < 3; ++r) {
      const double want = (H * x.row(r).transpose() - b.row(r).transpose()).norm() / b.row(r).norm();
      EXPECT_NEAR(s.relative_residuals[r], want, kExactTolerance * std::max(1.0, want));
      worst = std::max(worst, want);
    }
    EXPECT_NEAR(s.relative_residual, worst, kExactTolerance * std::max(1.0, worst));
  }
}

// LiSSA says converged only when its residual is below its tolerance: a truncated series
// is max-iterations with its residual, and a full-batch run stops once it gets there.
TEST(Lissa, ConvergedOnlyBelowTolerance) {
  Problem pr = Logistic();
  MinibatchCurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0, 1);
  const Matrix b = Upload(*pr.backend, RandomRows(2, pr.p, 16));
  Matrix X = pr.backend->Allocate(2, pr.p);
  LissaOptions options;
  options.depth = 5;
  options.relative_tolerance = 1e-6;
  const SolveSummary few = Lissa(A, b, X, options);
  EXPECT_EQ(few.termination, Termination::kMaxIterations) << few.message;
  EXPECT_GT(few.relative_residual, options.relative_tolerance);
  EXPECT_NE(few.message.find("above --lissa-tolerance"), std::string::npos) << few.message;
  options.depth = 100000;
  const SolveSummary enough = Lissa(A, b, X, options);
  ASSERT_TRUE(enough.converged()) << enough.message;
  EXPECT_LE(enough.relative_residual, options.relative_tolerance);
  EXPECT_LT(enough.iterations, options.depth);
}

// The K-FAC preconditioner on the badly conditioned softmax regression of the CG test
// above (κ(A) ≈ 3e6, features over four orders of magnitude), at weights scaled to a tenth
// so that the softmax is not saturated, as at a fitted model's optimum (at the random
// weights K-FAC's E[A ⊗ xxᵀ] ≈ E[A] ⊗ E[xxᵀ] is poor; on digits784 it is excellent):
// κ(M⁻¹A) ≈ 19. Preconditioned LiSSA reaches the explicit solve where plain LiSSA, given
// more steps, is still far from it.
TEST(Lissa, KfacPreconditionedSolvesBadlyConditionedSoftmaxInFewerSteps) {
  BadlyConditionedSoftmax problem(0.1);
  kernels::Backend<double>* backend = problem.backend.get();
  Objective<double>& objective = *problem.objective;
  const int64_t p = problem.p;
  Matrix theta = problem.theta;
  MinibatchCurvatureOperator<double> A(objective, theta, Curvature::kHessian, 0.0, 1);
  KfacPreconditioner<double> M(objective, theta, 0.0);
  const Eigen::MatrixXd b = RandomRows(2, p, 53);
  const Eigen::MatrixXd want = ExplicitSolve(Explicit(A), b);
  LissaOptions options;  // full batch (n = 300): deterministic, stops at the tolerance
  options.relative_tolerance = 1e-6;
  options.depth = 3000;
  Matrix X = backend->Allocate(2, p);
  const SolveSummary pre = Lissa(A, Upload(*backend, b), X, options, &M);
  ASSERT_TRUE(pre.converged()) << pre.message;
  EXPECT_EQ(pre.preconditioner, "kfac");
  EXPECT_LE(RelativeError(Download(*backend, X), want), 1e-3);
  const SolveSummary plain = Lissa(A, Upload(*backend, b), X, options);
  EXPECT_EQ(plain.termination, Termination::kMaxIterations) << plain.message;
  EXPECT_EQ(plain.iterations, options.depth);
  EXPECT_LT(2 * pre.iterations, plain.iterations);
  EXPECT_GT(RelativeError(Download(*backend, X), want), 10 * 1e-3)
      << "plain LiSSA should be far from the answer at this depth";
}

// The largest eigenvalue of M⁻¹A by preconditioned Lanczos, against an explicit
// eigensolve of M⁻¹A (similar to a symmetric matrix: real eigenvalues).
TEST(Lissa, PreconditionedLargestEigenvalueEstimate) {
  Problem pr = Logistic();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  KfacPreconditioner<double> M(*pr.objective, pr.theta, 0.0);
  const Eigen::MatrixXd MA = Explicit(M) * Explicit(A);  // M⁻¹ A (both symmetric)
  const double top = Eigen::EigenSolver<Eigen::MatrixXd>(MA).eigenvalues().real().maxCoeff();
  EXPECT_NEAR(EstimateLargestEigenvalue<double>(A, 20, 3, &M), top, 1e-6 * top);
}

// A failed solve does not report a residual it did not compute.
TEST(Direct, FailedSolveReportsNoResidual) {
  Problem pr = Mlp();  // its Hessian is indefinite without damping
  InverseHvpOptions o;
  o.solver = SolverKind::kDirect;
  InverseHvp<double> inverse(*pr.objective, pr.theta, o);
  Matrix X = pr.backend->Zeros(1, pr.p);
  const SolveSummary s = inverse.Solve(Upload(*pr.backend, RandomRows(1, pr.p, 17)), X);
  EXPECT_EQ(s.termination, Termination::kNegativeCurvature);
  EXPECT_FALSE(s.residual_computed());
  EXPECT_TRUE(std::isnan(s.relative_residual)) << s.relative_residual;
}

// ---- lanczos --------------------------------------------------------------------------

TEST(Lanczos, FullRankIsExactIncludingRepeatedEigenvalues) {
  // Two zero features: their weights see only l2, an eigenvalue of multiplicity 2 that
  // closes the Krylov space early and forces a restart.
  for (int zero_features : {0, 2}) {
    Problem pr = Logistic(zero_features);
    CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
    const Eigen::MatrixXd H = Explicit(A);
    for (double damping : {0.0, 0.1}) {
      LanczosOptions options;
      options.rank = pr.p;
      options.damping = damping;
      const Eigen::MatrixXd b = RandomRows(2, pr.p, 12);
      Matrix X = pr.backend->Allocate(2, pr.p);
      const SolveSummary s = LanczosSolve(A, Upload(*pr.backend, b), X, options);
      ASSERT_TRUE(s.converged()) << s.message;
      if (zero_features > 0) {
        EXPECT_EQ(s.message.find("(0 restarts)"), std::string::npos) << s.message;
      }
      const Eigen::MatrixXd want =
          ExplicitSolve(H + damping * Eigen::MatrixXd::Identity(pr.p, pr.p), b);
      EXPECT_LE(RelativeError(Download(*pr.backend, X), want), kLanczosTolerance);
      EXPECT_LE(s.relative_residual, kLanczosTolerance);
    }
  }
}

TEST(Lanczos, ReducedRankIsExactOnItsSubspace) {
  Problem pr = Mlp();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kGaussNewton, 0.0);
  const Eigen::MatrixXd G = Explicit(A);
  LanczosOptions options;
  options.rank = 6;
  options.damping = 0.05;
  LanczosInverse<double> inverse;
  // Below full rank nothing is vouched for before a residual is computed.
  ASSERT_EQ(inverse.Compute(A, options).termination, Termination::kInexact);
  ASSERT_TRUE(inverse.ready());
  const Eigen::MatrixXd V = Download(*pr.backend, inverse.vectors());
  const Eigen::VectorXd theta =
      Eigen::Map<const Eigen::VectorXd>(inverse.eigenvalues().data(), options.rank);
  // Orthonormal Ritz vectors on which A acts as diag(θ) (Rayleigh-Ritz).
  const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(options.rank, options.rank);
  EXPECT_LE((V * V.transpose() - I).norm(), kLanczosTolerance);
  EXPECT_LE((V * G * V.transpose() - Eigen::MatrixXd(theta.asDiagonal())).norm(),
            kLanczosTolerance * G.norm());
  // The largest ones are converged eigenpairs: ‖G v − θ v‖ small for the top Ritz pair.
  EXPECT_LE((G * V.row(0).transpose() - theta(0) * V.row(0).transpose()).norm(), 1e-6 * G.norm());
  // x = V (Λ + λ)⁻¹ Vᵀ b + (1/λ)(b − V Vᵀ b), and for b ∈ span(V) it solves (A + λ) x = b.
  const double lambda = options.damping;
  const Eigen::MatrixXd b = RandomRows(2, pr.p, 13);
  Eigen::MatrixXd want = b / lambda;
  for (int64_t r = 0; r < options.rank; ++r)
    want += (b * V.row(r).transpose()) * V.row(r) * (1 / (theta(r) + lambda) - 1 / lambda);
  Matrix X = pr.backend->Allocate(2, pr.p);
  inverse.Solve(Upload(*pr.backend, b), X);
  EXPECT_LE(RelativeError(Download(*pr.backend, X), want), kExactTolerance);
  const Eigen::MatrixXd c = RandomRows(1, options.rank, 14);
  inverse.Solve(Upload(*pr.backend, c * V), X.Rows(0, 1));
  const Eigen::MatrixXd in_span = c * (theta.array() + lambda).inverse().matrix().asDiagonal() * V;
  EXPECT_LE(RelativeError(Download(*pr.backend, X.Rows(0, 1)), in_span), kExactTolerance);
}

// Below full rank Lanczos is an approximation: converged only when its recomputed residual
// is below the tolerance (here with a damping so large that the discarded spectrum
// hardly matters), inexact otherwise and whenever the residual was not computed.
TEST(Lanczos, LowRankNeverClaimsConvergenceAboveTolerance) {
  Problem pr = Mlp();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kGaussNewton, 0.0);
  const Matrix b = Upload(*pr.backend, RandomRows(2, pr.p, 18));
  Matrix X = pr.backend->Allocate(2, pr.p);
  LanczosOptions options;
  options.rank = 6;
  options.damping = 0.05;
  const SolveSummary low = LanczosSolve(A, b, X, options);
  EXPECT_EQ(low.termination, Termination::kInexact) << low.message;
  EXPECT_GT(low.relative_residual, options.relative_tolerance);
  EXPECT_NE(low.message.find("above the tolerance"), std::string::npos) << low.message;
  options.damping = 1e9;
  const SolveSummary damped = LanczosSolve(A, b, X, options);
  EXPECT_TRUE(damped.converged()) << damped.message;
  EXPECT_LE(damped.relative_residual, options.relative_tolerance);
  // Through InverseHvp: a bulk solve without the residual check vouches for nothing.
  InverseHvpOptions o;
  o.solver = SolverKind::kLanczos;
  o.curvature = Curvature::kGaussNewton;
  o.damping = 0.05;
  o.lanczos.rank = 6;
  InverseHvp<double> inverse(*pr.objective, pr.theta, o);
  const SolveSummary checked = inverse.Solve(b, X);
  EXPECT_EQ(checked.termination, Termination::kInexact);
  EXPECT_TRUE(checked.residual_computed());
  const SolveSummary bulk = inverse.Solve(b, X, /*check_residual=*/false);
  EXPECT_EQ(bulk.termination, Termination::kInexact);
  EXPECT_FALSE(bulk.residual_computed());
  EXPECT_NE(bulk.message.find("not computed"), std::string::npos) << bulk.message;
  // Full rank is the exact solve, converged with or without the check.
  o.lanczos.rank = pr.p;
  InverseHvp<double> full(*pr.objective, pr.theta, o);
  EXPECT_TRUE(full.Solve(b, X).converged());
  EXPECT_TRUE(full.Solve(b, X, /*check_residual=*/false).converged());
}

TEST(Lanczos, IndefiniteHessianReportedAndRejectedWhenDampingTooSmall) {
  Problem pr = Mlp();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  const double mu = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(Explicit(A)).eigenvalues()(0);
  ASSERT_LT(mu, 0);
  LanczosOptions options;
  options.rank = pr.p;
  options.damping = -mu / 2;
  LanczosInverse<double> inverse;
  const SolveSummary s = inverse.Compute(A, options);
  EXPECT_EQ(s.termination, Termination::kNegativeCurvature);
  EXPECT_NE(s.message.find("indefinite"), std::string::npos) << s.message;
  options.damping = -2 * mu;
  const SolveSummary ok = inverse.Compute(A, options);
  EXPECT_TRUE(ok.converged()) << ok.message;
  EXPECT_NE(ok.message.find("smallest Ritz value"), std::string::npos) << ok.message;
}

TEST(Lanczos, LargestEigenvalueEstimate) {
  Problem pr = Mlp();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kGaussNewton, 0.0);
  const double top =
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(Explicit(A)).eigenvalues().maxCoeff();
  EXPECT_NEAR(EstimateLargestEigenvalue(A, 20, 3), top, 1e-6 * top);
}

// ---- options --------------------------------------------------------------------------

TEST(SolverOptions, ValidateRejectsBadValues) {
  EXPECT_THROW((DirectOptions{0}.Validate()), Error);
  EXPECT_THROW((DirectOptions{256, 0}.Validate()), Error);
  EXPECT_THROW((CgOptions{0.0}.Validate()), Error);
  EXPECT_THROW((CgOptions{1e-8, 0}.Validate()), Error);
  LissaOptions lissa;
  lissa.depth = 0;
  EXPECT_THROW(lissa.Validate(), Error);
  lissa = {};
  lissa.scale = -1;
  EXPECT_THROW(lissa.Validate(), Error);
  lissa = {};
  lissa.batch_size = -1;  // 0 is all examples
  EXPECT_THROW(lissa.Validate(), Error);
  lissa = {};
  lissa.relative_tolerance = 0;
  EXPECT_THROW(lissa.Validate(), Error);
  LanczosOptions lanczos;
  lanczos.rank = 0;
  EXPECT_THROW(lanczos.Validate(), Error);
  lanczos = {};
  lanczos.rank = 10;
  lanczos.iterations = 5;
  EXPECT_THROW(lanczos.Validate(), Error);
  lanczos = {};
  lanczos.damping = -1;
  EXPECT_THROW(lanczos.Validate(), Error);
  lanczos = {};
  lanczos.relative_tolerance = -1;
  EXPECT_THROW(lanczos.Validate(), Error);
}

TEST(SolverOptions, SizeLimitsAreErrors) {
  Problem pr = Logistic();
  CurvatureOperator<double> A(*pr.objective, pr.theta, Curvature::kHessian, 0.0);
  Matrix B = pr.backend->Zeros(1, pr.p), X = pr.backend->Allocate(1, pr.p);
  DirectOptions direct;
  direct.max_params = pr.p - 1;
  try {
    DirectSolve(A, B, X, direct);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cg"), std::string::npos) << e.what();
  }
  LanczosOptions lanczos;
  lanczos.rank = pr.p + 1;
  EXPECT_THROW(LanczosSolve(A, B, X, lanczos), Error);
  lanczos.rank = pr.p - 1;  // damping 0 below full rank
  EXPECT_THROW(LanczosSolve(A, B, X, lanczos), Error);
}

// ---- progress -------------------------------------------------------------------------

struct RecordingSink final : ProgressSink {
  std::vector<std::tuple<std::string, int64_t, int64_t>> reports;
  void Report(const char* phase, int64_t done, int64_t total) override {
    reports.emplace_back(phase, done, total);
  }
};

// Every solver reports its long work through InverseHvpOptions::progress: a phase that
// starts at 0 and counts up to its units of work (operator applications, steps).
TEST(Progress, EverySolverReportsThroughInverseHvpOptions) {
  Problem pr = Logistic();
  const Matrix b = Upload(*pr.backend, RandomRows(1, pr.p, 19));
  Matrix X = pr.backend->Allocate(1, pr.p);
  struct Case {
    SolverKind solver;
    std::string phase;
    int64_t total;  // expected total, 0: the solver's own limit (checked below)
  };
  for (const Case& c : {Case{SolverKind::kDirect, "forming the curvature matrix", pr.p},
                        Case{SolverKind::kCg, "cg", 1000}, Case{SolverKind::kLissa, "lissa", 50},
                        Case{SolverKind::kLanczos, "lanczos", pr.p}}) {
    SCOPED_TRACE(Name(c.solver));
    RecordingSink sink;
    InverseHvpOptions o;
    o.solver = c.solver;
    o.damping = 0.1;
    o.lissa.depth = 50;
    o.lanczos.rank = pr.p;
    o.direct.block_size = 4;  // several blocks
    o.progress = &sink;
    InverseHvp<double> inverse(*pr.objective, pr.theta, o);
    inverse.Solve(b, X);
    ASSERT_GE(sink.reports.size(), 2u);
    int64_t last = -1;
    for (const auto& [phase, done, total] : sink.reports) {
      if (phase != c.phase) continue;  // e.g. LiSSA's scale estimate reports nothing
      EXPECT_EQ(total, c.total);
      EXPECT_GT(done, last);
      EXPECT_LE(done, total);
      last = done;
    }
    EXPECT_GT(last, 0);
    if (c.solver == SolverKind::kDirect || c.solver == SolverKind::kLanczos) {
      EXPECT_EQ(last, c.total);
    }
  }
}

}  // namespace
}  // namespace lethe
