// The engine's answers, not only its ops, through each candidate backend (CPU f32, CUDA
// f64, CUDA f32) against the CPU in f64: every inverse-HVP solver, influence and
// self-influence scores, and a Newton unlearning patch. The same engine code runs on both
// sides, so in f64 any difference beyond rounding is a backend bug that the per-op
// conformance tests missed (a wrong stride, a stale workspace, a missing synchronisation).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/influence.h"
#include "engine/unlearn.h"
#include "tests/engine/test_problems.h"
#include "tests/kernels/conformance_harness.h"

namespace lethe::kernels::testing {
namespace {

// Normwise, relative to the reference. f64: the solves are well conditioned (κ ≲ 100),
// so rounding differences stay far below this. f32: ε₃₂ · κ with room for the operator's
// own f32 rounding.
constexpr Tolerance kAnswerTolerance{1e-10, 3e-3};

class EngineOnBackends : public BackendTest {};

// One model and its data on one backend.
template <typename T>
struct Side {
  std::unique_ptr<Backend<T>> backend;
  std::unique_ptr<Objective<T>> train, tests, kept, forget;
  Matrix<T> theta;
};

template <typename T>
Side<T> MakeSide(std::unique_ptr<Backend<T>> be, const Model& model, const io::Dataset& train,
                 const io::Dataset& tests, const std::vector<int64_t>& kept_rows,
                 const std::vector<int64_t>& forget_rows) {
  Side<T> s;
  s.backend = std::move(be);
  Backend<T>& b = *s.backend;
  const ObjectiveOptions batches{16};  // partial last batches everywhere
  s.train = std::make_unique<Objective<T>>(b, model.arch, UploadData(b, train), batches);
  s.tests = std::make_unique<Objective<T>>(b, model.arch, UploadData(b, tests), batches);
  s.kept = std::make_unique<Objective<T>>(b, model.arch, UploadData(b, train, kept_rows), batches);
  s.forget =
      std::make_unique<Objective<T>>(b, model.arch, UploadData(b, train, forget_rows), batches);
  const std::vector<T> theta(model.theta.begin(), model.theta.end());
  s.theta = b.Allocate(1, model.arch.num_params);
  b.Upload(theta.data(), s.theta);
  return s;
}

template <typename T>
void CompareEngine(const Candidate& candidate, bool mlp) {
  const double tol = sizeof(T) == 4 ? kAnswerTolerance.f32 : kAnswerTolerance.f64;
  const io::Dataset train = lethe::testing::RandomData(LossKind::kCrossEntropy, 61, 6, 3, 21);
  const io::Dataset tests = lethe::testing::RandomData(LossKind::kCrossEntropy, 5, 6, 3, 22);
  Model model = lethe::testing::RandomModel(
      lethe::testing::MlpSpec(LossKind::kCrossEntropy, Activation::kTanh, mlp ? 5 : 0, 0.05, 1),
      train, 23);
  for (double& t : model.theta) t = static_cast<double>(static_cast<T>(t));
  std::vector<int64_t> kept_rows, forget_rows;
  for (int64_t i = 0; i < train.n; ++i) (i % 10 == 3 ? forget_rows : kept_rows).push_back(i);

  Side<T> test =
      MakeSide<T>(MakeCandidateBackend<T>(candidate), model, train, tests, kept_rows, forget_rows);
  Side<double> ref =
      MakeSide<double>(MakeBackend<double>({}), model, train, tests, kept_rows, forget_rows);
  const int64_t p = model.arch.num_params;

  // The MLP's Hessian at a random point is indefinite: its solves use Gauss-Newton.
  InverseHvpOptions base;
  base.curvature = mlp ? Curvature::kGaussNewton : Curvature::kHessian;
  base.damping = 0.1;
  base.cg.relative_tolerance = sizeof(T) == 4 ? 1e-6 : 1e-13;
  base.cg.max_iterations = 10 * static_cast<int>(p);
  base.lanczos.rank = p;  // full rank: exact
  base.lissa.depth = 50;  // not converged: the same truncated series on both sides
  base.lissa.repeats = 2;
  base.lissa.batch_size = 16;

  std::vector<double> b(2 * p);
  for (int64_t i = 0; i < 2 * p; ++i) b[i] = static_cast<double>(static_cast<T>(std::cos(3.0 * i)));
  const std::vector<T> b_t(b.begin(), b.end());
  auto B_test = test.backend->Allocate(2, p), X_test = test.backend->Allocate(2, p);
  auto B_ref = ref.backend->Allocate(2, p), X_ref = ref.backend->Allocate(2, p);
  test.backend->Upload(b_t.data(), B_test);
  ref.backend->Upload(b.data(), B_ref);
  for (SolverKind solver :
       {SolverKind::kDirect, SolverKind::kCg, SolverKind::kLanczos, SolverKind::kLissa}) {
    SCOPED_TRACE(Name(solver));
    InverseHvpOptions options = base;
    options.solver = solver;
    InverseHvp<T> inverse_test(*test.train, test.theta, options);
    InverseHvp<double> inverse_ref(*ref.train, ref.theta, options);
    const SolveSummary s_test = inverse_test.Solve(B_test, X_test);
    const SolveSummary s_ref = inverse_ref.Solve(B_ref, X_ref);
    if (solver != SolverKind::kLissa) {
      ASSERT_TRUE(s_test.converged()) << s_test.message;
      ASSERT_TRUE(s_ref.converged()) << s_ref.message;
    }
    EXPECT_LE(RelativeError(Read(*test.backend, X_test), Read(*ref.backend, X_ref)), tol)
        << "inverse HVP";

    if (solver != SolverKind::kDirect) continue;
    const InfluenceResult i_test =
        InfluenceOnTests(*test.train, *test.tests, test.theta, inverse_test);
    const InfluenceResult i_ref = InfluenceOnTests(*ref.train, *ref.tests, ref.theta, inverse_ref);
    EXPECT_LE(RelativeError(i_test.scores, i_ref.scores), tol) << "influence scores";
    const InfluenceResult self_test = SelfInfluence(*test.train, test.theta, inverse_test, 7);
    const InfluenceResult self_ref = SelfInfluence(*ref.train, ref.theta, inverse_ref, 7);
    EXPECT_LE(RelativeError(self_test.scores, self_ref.scores), tol) << "self-influence";
  }

  // Two Newton steps (direct solves, line search on) from the same θ.
  UnlearnOptions unlearn;
  unlearn.steps = 2;
  unlearn.inverse = base;
  unlearn.inverse.solver = SolverKind::kDirect;
  unlearn.inverse.damping = mlp ? 0.1 : 0.0;
  const UnlearnSummary u_test = Unlearn(*test.kept, *test.forget, test.theta, unlearn);
  const UnlearnSummary u_ref = Unlearn(*ref.kept, *ref.forget, ref.theta, unlearn);
  ASSERT_TRUE(u_test.ok) << u_test.message;
  ASSERT_TRUE(u_ref.ok) << u_ref.message;
  EXPECT_LE(RelativeError(Read(*test.backend, test.theta), Read(*ref.backend, ref.theta)), tol)
      << "Newton patch";
  EXPECT_NEAR(u_test.kept_grad_norm_before, u_ref.kept_grad_norm_before,
              tol * u_ref.kept_grad_norm_before);
}

TEST_P(EngineOnBackends, SolversInfluenceAndNewtonPatchMatchCpuDouble) {
  for (bool mlp : {false, true}) {
    SCOPED_TRACE(mlp ? "mlp" : "softmax regression");
    if (GetParam().f32)
      CompareEngine<float>(GetParam(), mlp);
    else
      CompareEngine<double>(GetParam(), mlp);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, EngineOnBackends, ::testing::ValuesIn(Candidates()),
                         CandidateName);

}  // namespace
}  // namespace lethe::kernels::testing
