// Influence and self-influence scores from every solver against the same scores computed
// the slow, obvious way: explicit per-example gradients, the explicit (damped) curvature
// matrix and an Eigen solve.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include "engine/influence.h"
#include "tests/engine/test_problems.h"

namespace lethe {
namespace {

using Mat = Eigen::MatrixXd;

struct Truth {
  Mat scores;  // m × n
  Eigen::VectorXd self;
};

class InfluenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = kernels::MakeBackend<double>({});
    train_data_ = testing::RandomData(LossKind::kCrossEntropy, 40, 5, 3, 11);
    test_data_ = testing::RandomData(LossKind::kCrossEntropy, 4, 5, 3, 12);
    spec_ = testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, 4, 0.1, 1);
    model_ = testing::RandomModel(spec_, train_data_, 3);
    train_ = std::make_unique<Objective<double>>(*backend_, model_.arch,
                                                 UploadData(*backend_, train_data_),
                                                 ObjectiveOptions{16});
    tests_ = std::make_unique<Objective<double>>(*backend_, model_.arch,
                                                 UploadData(*backend_, test_data_));
    p_ = model_.arch.num_params;
    theta_ = backend_->Allocate(1, p_);
    backend_->Upload(model_.theta.data(), theta_);
    // This MLP's Hessian at a random point is indefinite; damp it just enough to be
    // positive definite with a condition number the solvers handle (λ_min + λ ≥ 0.05).
    const Mat H = ExplicitCurvature(Curvature::kHessian);
    const double lambda_min = Eigen::SelfAdjointEigenSolver<Mat>(H).eigenvalues().minCoeff();
    ASSERT_LT(lambda_min, 0) << "the test needs an indefinite Hessian";
    damping_ = 0.05 - lambda_min;
  }

  Mat ExplicitCurvature(Curvature c) {
    auto I = backend_->Allocate(p_, p_), H = backend_->Allocate(p_, p_);
    std::vector<double> eye(p_ * p_, 0.0);
    for (int64_t i = 0; i < p_; ++i) eye[i * p_ + i] = 1;
    backend_->Upload(eye.data(), I);
    train_->CurvatureProduct(c, theta_, I, H);
    Mat A = Download(H);
    return 0.5 * (A + A.transpose());
  }

  Mat Download(const kernels::Matrix<double>& m) {
    Mat out(m.cols(), m.rows());  // column-major host copy of a row-major matrix, transposed back
    backend_->Download(m, out.data());
    return out.transpose();
  }
  Mat PerExample(Objective<double>& o) {
    auto G = backend_->Allocate(o.num_examples(), p_);
    o.PerExampleGradients(theta_, 0, o.num_examples(), G);
    return Download(G);
  }
  Truth Explicit(Curvature c, double damping) {
    const Mat A = ExplicitCurvature(c) + damping * Mat::Identity(p_, p_);
    const Mat Gtrain = PerExample(*train_), Gtest = PerExample(*tests_);
    const double n = static_cast<double>(train_->num_examples());
    Truth t;
    t.scores = Gtest * A.ldlt().solve(Gtrain.transpose()) / n;
    const Mat X = A.ldlt().solve(Gtrain.transpose());
    t.self = (Gtrain.transpose().array() * X.array()).colwise().sum().transpose() / n;
    return t;
  }
  void Check(const InverseHvpOptions& options, double tolerance) {
    const Truth t = Explicit(options.curvature, options.damping);
    InverseHvp<double> inverse(*train_, theta_, options);
    const InfluenceResult r = InfluenceOnTests(*train_, *tests_, theta_, inverse);
    ASSERT_TRUE(r.summary.converged()) << r.summary.message;
    ASSERT_EQ(r.scores.size(), static_cast<size_t>(t.scores.size()));
    ASSERT_EQ(r.m, t.scores.rows());
    ASSERT_EQ(r.n, t.scores.cols());
    const double scale = t.scores.cwiseAbs().maxCoeff();
    for (int64_t j = 0; j < r.m; ++j)
      for (int64_t i = 0; i < r.n; ++i)
        ASSERT_NEAR(r.scores[j * r.n + i], t.scores(j, i), tolerance * scale)
            << Name(options.solver) << " score(" << j << ", " << i << ")";
    InverseHvp<double> inverse2(*train_, theta_, options);
    const InfluenceResult s = SelfInfluence(*train_, theta_, inverse2, 7);  // 7: a partial last block
    ASSERT_TRUE(s.summary.converged()) << s.summary.message;
    ASSERT_EQ(s.scores.size(), static_cast<size_t>(t.self.size()));
    const double self_scale = t.self.cwiseAbs().maxCoeff();
    for (int64_t i = 0; i < s.n; ++i)
      ASSERT_NEAR(s.scores[i], t.self(i), tolerance * self_scale) << Name(options.solver) << " self " << i;
  }

  std::unique_ptr<kernels::Backend<double>> backend_;
  io::Dataset train_data_, test_data_;
  io::ModelSpec spec_;
  Model model_;
  std::unique_ptr<Objective<double>> train_, tests_;
  int64_t p_ = 0;
  kernels::Matrix<double> theta_;
  double damping_ = 0;
};

// Tolerances relative to the largest score. The direct solve is exact up to rounding of a
// well-conditioned (damped) system; CG stops at relative residual 1e-10; Lanczos at full
// rank is exact up to the loss of orthogonality it corrects; LiSSA is a stochastic
// estimate (full batch here, so only its truncation bias remains).
constexpr double kDirectTolerance = 1e-10;
constexpr double kCgTolerance = 1e-7;
constexpr double kLanczosTolerance = 1e-7;
constexpr double kLissaTolerance = 2e-2;

TEST_F(InfluenceTest, DirectMatchesExplicitHessianSolve) {
  InverseHvpOptions o;
  o.solver = SolverKind::kDirect;
  o.damping = damping_;
  Check(o, kDirectTolerance);
}

TEST_F(InfluenceTest, DirectGaussNewtonMatchesExplicit) {
  InverseHvpOptions o;
  o.solver = SolverKind::kDirect;
  o.curvature = Curvature::kGaussNewton;
  Check(o, kDirectTolerance);
}

TEST_F(InfluenceTest, CgMatchesExplicitSolve) {
  for (PreconditionerKind pc : {PreconditionerKind::kNone, PreconditionerKind::kKfac}) {
    SCOPED_TRACE(Name(pc));
    InverseHvpOptions o;
    o.solver = SolverKind::kCg;
    o.preconditioner = pc;
    o.damping = damping_;
    o.cg.relative_tolerance = 1e-10;
    Check(o, kCgTolerance);
  }
}

TEST_F(InfluenceTest, LanczosAtFullRankMatchesExplicitSolve) {
  InverseHvpOptions o;
  o.solver = SolverKind::kLanczos;
  o.damping = damping_;
  o.lanczos.rank = p_;
  Check(o, kLanczosTolerance);
}

TEST_F(InfluenceTest, LissaApproachesExplicitSolve) {
  InverseHvpOptions o;
  o.solver = SolverKind::kLissa;
  o.curvature = Curvature::kGaussNewton;
  o.damping = 0.1;
  o.lissa.batch_size = 1 << 20;  // full batch: deterministic
  o.lissa.depth = 2000;
  o.lissa.relative_tolerance = 1e-4;
  Check(o, kLissaTolerance);
}

TEST_F(InfluenceTest, IndefiniteHessianIsReportedNotSilentlyUsed) {
  // Without damping this MLP's Hessian at a random point is indefinite.
  InverseHvpOptions o;
  o.solver = SolverKind::kDirect;
  InverseHvp<double> inverse(*train_, theta_, o);
  const InfluenceResult r = InfluenceOnTests(*train_, *tests_, theta_, inverse);
  EXPECT_EQ(r.summary.termination, Termination::kNegativeCurvature) << r.summary.message;
  EXPECT_TRUE(r.scores.empty());
}

}  // namespace
}  // namespace lethe
