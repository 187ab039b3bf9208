// The dense preconditioner (engine/dense_preconditioner.h) against explicit solves: CG with
// it converges in at most 3 iterations at the θ it was built for and lands on the direct
// solve; reused at a nearby point (an example removed, θ moved) it still converges in a
// few iterations to the same answer as the direct solve there; InverseHvp's store builds it
// once and reuses it; and the refusals (memory bound, indefinite curvature) name the problem.
// Also what a stream keeps on disk: a factor downloaded and adopted applies bit for bit as
// the original, and the carried kept gradient (engine/unlearn.h) is the fresh one to rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/dense_preconditioner.h"
#include "engine/inverse_hvp.h"
#include "engine/solvers/cg.h"
#include "engine/solvers/direct.h"
#include "engine/unlearn.h"
#include "tests/engine/test_problems.h"

namespace lethe {
namespace {

template <typename T>
std::vector<double> Read(kernels::Backend<T>& be, const kernels::Matrix<T>& m) {
  std::vector<T> host(m.size());
  be.Download(m, host.data());
  return std::vector<double>(host.begin(), host.end());
}

double RelativeDistance(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += (a[i] - b[i]) * (a[i] - b[i]), norm += b[i] * b[i];
  return std::sqrt(diff / norm);
}

// Softmax regression (d = 12, C = 4, bias: p = 52) on n = 300 rows whose features span
// three orders of magnitude, so that plain CG needs many iterations.
struct Problem {
  io::Dataset data;
  Model model;
  std::unique_ptr<kernels::Backend<double>> be = kernels::MakeBackend<double>({});
  Problem() {
    data = testing::RandomData(LossKind::kCrossEntropy, 300, 12, 4, 21);
    for (int64_t i = 0; i < data.n; ++i)
      for (int64_t j = 0; j < 12; ++j) data.X[i * 12 + j] *= std::pow(10.0, -1.5 + 0.25 * j);
    model = testing::RandomModel(testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 0, 1e-3),
                                 data, 22);
  }
  kernels::Matrix<double> Theta(double shift = 0) {
    std::vector<double> th = model.theta;
    for (size_t i = 0; i < th.size(); ++i) th[i] += shift * std::cos(0.9 * double(i));
    kernels::Matrix<double> theta = be->Allocate(1, static_cast<int64_t>(th.size()));
    be->Upload(th.data(), theta);
    return theta;
  }
  kernels::Matrix<double> Rhs(int64_t m) {
    const int64_t p = model.arch.num_params;
    std::vector<double> b(m * p);
    for (size_t i = 0; i < b.size(); ++i) b[i] = std::sin(1.3 * double(i) + 0.2);
    kernels::Matrix<double> B = be->Allocate(m, p);
    be->Upload(b.data(), B);
    return B;
  }
};

// x = (C + λI)⁻¹ b by the direct solver, the reference.
std::vector<double> Direct(Objective<double>& objective, const kernels::Matrix<double>& theta,
                           double damping, const kernels::Matrix<double>& B) {
  CurvatureOperator<double> op(objective, theta, Curvature::kHessian, damping);
  kernels::Matrix<double> X = objective.backend().Allocate(B.rows(), B.cols());
  const SolveSummary s = DirectSolve(op, B, X, DirectOptions{});
  EXPECT_EQ(s.termination, Termination::kConverged) << s.message;
  return Read(objective.backend(), X);
}

TEST(DensePreconditioner, ConvergesInAtMostThreeIterationsAtItsOwnTheta) {
  Problem pr;
  Objective<double> objective(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data), ObjectiveOptions{64});
  const kernels::Matrix<double> theta = pr.Theta(), B = pr.Rhs(2);
  for (double damping : {0.0, 0.05}) {
    DensePreconditioner<double> M(objective, theta, Curvature::kHessian, damping, {});
    EXPECT_GE(M.setup_seconds(), 0);
    CurvatureOperator<double> A(objective, theta, Curvature::kHessian, damping);
    CgOptions o;
    o.relative_tolerance = 1e-13;
    kernels::Matrix<double> X = pr.be->Zeros(B.rows(), B.cols()), Y = pr.be->Zeros(B.rows(), B.cols());
    const SolveSummary s = ConjugateGradient(A, B, X, o, &M);
    ASSERT_EQ(s.termination, Termination::kConverged) << s.message;
    EXPECT_LE(s.iterations, 3) << "damping " << damping;
    EXPECT_LE(s.relative_residual, 1e-13);
    EXPECT_LE(RelativeDistance(Read(*pr.be, X), Direct(objective, theta, damping, B)), 1e-10);
    // The preconditioner is what does it: plain CG on the same system needs many more.
    const SolveSummary plain = ConjugateGradient(A, B, Y, o);
    EXPECT_GT(plain.iterations, 5 * s.iterations) << "damping " << damping;
  }
}

// Built at θ₀ on all rows, used at θ₀ + δ on the rows without two of them: the curvature
// has moved by O(δ) and O(2/n); CG still answers to its tolerance in a few iterations.
TEST(DensePreconditioner, ReusedNearbyStillGivesTheDirectAnswer) {
  Problem pr;
  Objective<double> full(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data));
  std::vector<int64_t> kept(pr.data.n - 2);
  std::iota(kept.begin(), kept.end(), 2);
  Objective<double> fewer(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data, kept));
  DensePreconditioner<double> M(full, pr.Theta(), Curvature::kHessian, 0.0, {});
  EXPECT_TRUE(M.Fits(fewer, Curvature::kHessian, 0.0));
  EXPECT_FALSE(M.Fits(fewer, Curvature::kHessian, 0.1));  // another damping: another matrix
  const kernels::Matrix<double> theta = pr.Theta(1e-3), B = pr.Rhs(1);
  CurvatureOperator<double> A(fewer, theta, Curvature::kHessian, 0.0);
  CgOptions o;
  o.relative_tolerance = 1e-12;
  kernels::Matrix<double> X = pr.be->Zeros(1, B.cols());
  const SolveSummary s = ConjugateGradient(A, B, X, o, &M);
  ASSERT_EQ(s.termination, Termination::kConverged) << s.message;
  EXPECT_LE(s.iterations, 8);
  EXPECT_GT(s.iterations, 1);  // not the exact matrix any more
  EXPECT_LE(RelativeDistance(Read(*pr.be, X), Direct(fewer, theta, 0.0, B)), 1e-9);
}

// InverseHvp with --preconditioner dense and a store: the first solve builds it, a later
// InverseHvp (another objective, another θ) reuses it and says so; f32 has its own.
TEST(DensePreconditioner, StoreBuildsOnceAndInverseHvpReusesIt) {
  Problem pr;
  Objective<double> full(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data));
  std::vector<int64_t> kept(pr.data.n - 1);
  std::iota(kept.begin(), kept.end(), 1);
  Objective<double> fewer(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data, kept));
  DensePreconditionerStore store;
  InverseHvpOptions o;
  o.solver = SolverKind::kCg;
  o.preconditioner = PreconditionerKind::kDense;
  o.cg.relative_tolerance = 1e-12;
  o.dense_store = &store;
  const kernels::Matrix<double> B = pr.Rhs(1);
  kernels::Matrix<double> X = pr.be->Allocate(1, B.cols());
  const kernels::Matrix<double> theta0 = pr.Theta(), theta1 = pr.Theta(1e-4);
  InverseHvp<double> first(full, theta0, o);
  const SolveSummary s1 = first.Solve(B, X);
  EXPECT_EQ(s1.preconditioner, "dense");
  EXPECT_GT(s1.setup_seconds, 0);
  EXPECT_LE(s1.iterations, 3);
  InverseHvp<double> second(fewer, theta1, o);
  const SolveSummary s2 = second.Solve(B, X);
  EXPECT_EQ(s2.preconditioner, "dense (reused)");
  EXPECT_EQ(s2.setup_seconds, 0);
  EXPECT_EQ(s2.termination, Termination::kConverged);
  EXPECT_LE(RelativeDistance(Read(*pr.be, X), Direct(fewer, theta1, 0.0, B)), 1e-9);
  EXPECT_EQ(store.builds(), 1);
  // A different damping does not fit: rebuilt, not misused.
  o.damping = 0.01;
  InverseHvp<double> third(fewer, theta1, o);
  EXPECT_EQ(third.Solve(B, X).preconditioner, "dense");
  EXPECT_EQ(store.builds(), 2);
  // Without a store, each InverseHvp builds its own.
  o.dense_store = nullptr;
  InverseHvp<double> own(fewer, theta1, o);
  EXPECT_EQ(own.Solve(B, X).preconditioner, "dense");
  EXPECT_EQ(store.builds(), 2);
}

// The backend's one-right-hand-side solve (the preconditioner's application, a vector path
// on the CPU) against the same right-hand side solved among others (the matrix path).
TEST(DensePreconditioner, OneRightHandSideSolvesAsMany) {
  Problem pr;
  Objective<double> objective(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data));
  const int64_t p = objective.num_params();
  DensePreconditioner<double> M(objective, pr.Theta(), Curvature::kHessian, 0.0, {});
  const kernels::Matrix<double> B = pr.Rhs(3);
  kernels::Matrix<double> many = pr.be->Allocate(3, p), one = pr.be->Allocate(1, p);
  M.Apply(B, many);
  M.Apply(B.Rows(1, 1), one);
  const std::vector<double> a = Read(*pr.be, many), b = Read(*pr.be, one);
  EXPECT_LE(RelativeDistance(b, std::vector<double>(a.begin() + p, a.begin() + 2 * p)), 1e-12);
  // And it is M⁻¹: M · (M⁻¹ b) = b, M formed from curvature products.
  CurvatureOperator<double> A(objective, pr.Theta(), Curvature::kHessian, 0.0);
  kernels::Matrix<double> back = pr.be->Allocate(1, p);
  A.Apply(one, back);
  const std::vector<double> rhs = Read(*pr.be, B);
  EXPECT_LE(RelativeDistance(Read(*pr.be, back), std::vector<double>(rhs.begin() + p, rhs.begin() + 2 * p)), 1e-10);
}

TEST(DensePreconditioner, RefusesAboveItsMemoryBound) {
  Problem pr;
  Objective<double> objective(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data));
  DensePreconditionerOptions o;
  o.max_bytes = 1000;  // p = 52: 52² · 8 = 21,632 bytes
  EXPECT_DOUBLE_EQ(DensePreconditionerBytes(52, 8), 21632.0);
  try {
    DensePreconditioner<double> M(objective, pr.Theta(), Curvature::kHessian, 0.0, o);
    FAIL() << "no refusal";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("0.00 GB for p = 52"), std::string::npos) << what;
    EXPECT_NE(what.find("--dense-max-gb"), std::string::npos) << what;
  }
}

TEST(DensePreconditioner, RefusesAnIndefiniteCurvature) {
  // A tanh MLP away from its optimum, no l2: its Hessian is indefinite (the direct solver
  // says so too), and a preconditioner must be positive definite.
  io::Dataset data = testing::RandomData(LossKind::kCrossEntropy, 40, 4, 3, 31);
  Model model = testing::RandomModel(testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 5, 0.0),
                                     data, 32);
  auto be = kernels::MakeBackend<double>({});
  Objective<double> objective(*be, model.arch, UploadData(*be, data));
  kernels::Matrix<double> theta = be->Allocate(1, objective.num_params());
  be->Upload(model.theta.data(), theta);
  CurvatureOperator<double> op(objective, theta, Curvature::kHessian, 0.0);
  DirectFactorization<double> f;
  ASSERT_EQ(f.Factorize(op, DirectOptions{}).termination, Termination::kNegativeCurvature);
  try {
    DensePreconditioner<double> M(objective, theta, Curvature::kHessian, 0.0, {});
    FAIL() << "no refusal";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("positive definite"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lethe

namespace lethe {
namespace {

// A factor downloaded (what tools/lethe/dense_cache.cc writes) and adopted by a new
// preconditioner applies bit for bit as the original.
TEST(DensePreconditioner, FactorRoundTripAppliesTheSame) {
  Problem pr;
  Objective<double> objective(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data));
  DensePreconditioner<double> M(objective, pr.Theta(), Curvature::kHessian, 0.0, {});
  DensePreconditioner<double> copy(*pr.be, M.Factor(), objective.num_params(), Curvature::kHessian,
                                   0.0, objective.l2());
  EXPECT_TRUE(copy.Fits(objective, Curvature::kHessian, 0.0));
  const kernels::Matrix<double> B = pr.Rhs(2);
  kernels::Matrix<double> a = pr.be->Allocate(2, B.cols()), b = pr.be->Allocate(2, B.cols());
  M.Apply(B, a);
  copy.Apply(B, b);
  EXPECT_EQ(Read(*pr.be, a), Read(*pr.be, b));
}

// The carried gradient (engine/unlearn.h, KeptGradient): a request that removes one more
// row, started from the previous request's exported gradient, starts from the gradient a
// fresh pass computes, to rounding, and lands on the same θ; a carried gradient over another
// row count is not used.
TEST(DensePreconditioner, CarriedGradientIsTheFreshOne) {
  Problem pr;
  auto rows = [&](int64_t from) {
    std::vector<int64_t> r(pr.data.n - from);
    std::iota(r.begin(), r.end(), from);
    return r;
  };
  const int64_t p = pr.model.arch.num_params;
  UnlearnOptions o;
  o.steps = 2;
  o.inverse.solver = SolverKind::kCg;
  KeptGradient exported;
  o.export_gradient = &exported;
  // Request 1: remove row 0 from θ0.
  Objective<double> kept1(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data, rows(1)));
  Objective<double> forget1(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data, {0}));
  kernels::Matrix<double> theta = pr.Theta();
  ASSERT_TRUE(Unlearn(kept1, forget1, theta, o).ok);
  ASSERT_EQ(exported.examples, pr.data.n - 1);
  // Request 2: remove rows 1 and 2, fresh and carried.
  Objective<double> kept2(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data, rows(3)));
  Objective<double> forget2(*pr.be, pr.model.arch, UploadData(*pr.be, pr.data, {1, 2}));
  kernels::Matrix<double> fresh = pr.be->Allocate(1, p), carried = pr.be->Allocate(1, p);
  pr.be->Copy(theta, fresh);
  pr.be->Copy(theta, carried);
  UnlearnOptions plain = o;
  plain.export_gradient = nullptr;
  const UnlearnSummary a = Unlearn(kept2, forget2, fresh, plain);
  UnlearnOptions with = plain;
  with.carried = &exported;
  const UnlearnSummary b = Unlearn(kept2, forget2, carried, with);
  EXPECT_FALSE(a.gradient_carried);
  EXPECT_TRUE(b.gradient_carried);
  EXPECT_GT(a.kept_grad_norm_before, 1e-6);  // a real step, not a point already optimal
  EXPECT_NEAR(b.kept_grad_norm_before, a.kept_grad_norm_before, 1e-12 * a.kept_grad_norm_before);
  EXPECT_NEAR(b.steps[0].kept_objective_before, a.steps[0].kept_objective_before,
              1e-13 * std::abs(a.steps[0].kept_objective_before));
  EXPECT_LE(RelativeDistance(Read(*pr.be, carried), Read(*pr.be, fresh)), 1e-12);
  // Carried over the wrong count (as if request 1 had removed two rows): computed afresh.
  KeptGradient wrong = exported;
  wrong.examples -= 1;
  with.carried = &wrong;
  pr.be->Copy(theta, carried);
  EXPECT_FALSE(Unlearn(kept2, forget2, carried, with).gradient_carried);
}

}  // namespace
}  // namespace lethe
