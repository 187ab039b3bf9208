// The engine's derivatives computed through each candidate backend (CPU f32, CUDA f64,
// CUDA f32) against the CPU in f64: the whole chain of ops as the engine composes them —
// forward, backpropagation, the R-operator, batching with a partial last batch — and a
// CG solve on the device, checked by its residual.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/solvers/cg.h"
#include "engine/solvers/linear_operator.h"
#include "tests/engine/test_problems.h"
#include "tests/kernels/conformance_harness.h"

namespace lethe::kernels::testing {
namespace {

// Normwise relative error of a whole gradient or Hessian product: a few hundred ops deep,
// each ~1 ulp, on O(1) values.
constexpr Tolerance kDerivativeTolerance{1e-11, 1e-5};
// CG's own stopping rule, checked again on the host in f64.
constexpr double kCgTolerance64 = 1e-8, kCgTolerance32 = 1e-3;

class ObjectiveOnBackends : public BackendTest {};

// `spec` null: an MLP on 6 features; else that spec on `features` per example.
template <typename T>
void CompareObjectives(const Candidate& candidate, LossKind loss,
                       const io::ModelSpec* spec = nullptr, int64_t features = 6) {
  const double tol = sizeof(T) == 4 ? kDerivativeTolerance.f32 : kDerivativeTolerance.f64;
  const io::Dataset data = lethe::testing::RandomData(loss, 53, features, 3, 7);
  Model model = lethe::testing::RandomModel(
      spec ? *spec : lethe::testing::MlpSpec(loss, Activation::kTanh, 8, 1e-2), data, 11);
  // θ rounded to T once, so both objectives see the same parameters.
  for (double& t : model.theta) t = static_cast<double>(static_cast<T>(t));
  const int64_t p = model.arch.num_params;
  auto test = MakeCandidateBackend<T>(candidate);
  auto ref = MakeBackend<double>({});
  const ObjectiveOptions batches{16};  // 53 = 3 × 16 + 5: a partial last batch
  Objective<T> f_test(*test, model.arch, UploadData(*test, data), batches);
  Objective<double> f_ref(*ref, model.arch, UploadData(*ref, data), batches);
  const std::vector<T> theta_t(model.theta.begin(), model.theta.end());
  auto theta_test = test->Allocate(1, p);
  test->Upload(theta_t.data(), theta_test);
  auto theta_ref = ref->Allocate(1, p);
  ref->Upload(model.theta.data(), theta_ref);

  auto g_test = test->Allocate(1, p);
  auto g_ref = ref->Allocate(1, p);
  const double l_test = f_test.ValueAndGradient(theta_test, g_test);
  const double l_ref = f_ref.ValueAndGradient(theta_ref, g_ref);
  EXPECT_NEAR(l_test, l_ref, tol * std::fabs(l_ref)) << "loss";
  EXPECT_LE(RelativeError(Read(*test, g_test), Read(*ref, g_ref)), tol) << "gradient";

  // Two directions at once (the rows of V), for both curvatures.
  std::vector<double> v(2 * p);
  for (int64_t i = 0; i < 2 * p; ++i) v[i] = static_cast<double>(static_cast<T>(std::sin(i + 1.0)));
  const std::vector<T> v_t(v.begin(), v.end());
  auto V_test = test->Allocate(2, p), HV_test = test->Allocate(2, p);
  auto V_ref = ref->Allocate(2, p), HV_ref = ref->Allocate(2, p);
  test->Upload(v_t.data(), V_test);
  ref->Upload(v.data(), V_ref);
  for (Curvature c : {Curvature::kHessian, Curvature::kGaussNewton}) {
    f_test.CurvatureProduct(c, theta_test, V_test, HV_test);
    f_ref.CurvatureProduct(c, theta_ref, V_ref, HV_ref);
    EXPECT_LE(RelativeError(Read(*test, HV_test), Read(*ref, HV_ref)), tol)
        << (c == Curvature::kHessian ? "Hessian" : "Gauss-Newton") << " products";
  }

  auto per_test = test->Allocate(20, p);
  auto per_ref = ref->Allocate(20, p);
  f_test.PerExampleGradients(theta_test, 30, 20, per_test);
  f_ref.PerExampleGradients(theta_ref, 30, 20, per_ref);
  EXPECT_LE(RelativeError(Read(*test, per_test), Read(*ref, per_ref)), tol)
      << "per-example gradients";

  const Metrics m_test = f_test.Evaluate(theta_test), m_ref = f_ref.Evaluate(theta_ref);
  EXPECT_NEAR(m_test.objective, m_ref.objective, tol * std::fabs(m_ref.objective));
  // f32 logits may order a near-tie differently: allow one example in f32.
  EXPECT_NEAR(m_test.accuracy, m_ref.accuracy, sizeof(T) == 4 ? 1.0 / data.n + 1e-12 : 0.0);

  // CG on the damped Gauss-Newton system, entirely on the candidate; residual recomputed
  // in f64 on the CPU reference.
  CurvatureOperator<T> op(f_test, theta_test, Curvature::kGaussNewton, 0.1);
  auto x_test = test->Zeros(1, p);
  CgOptions options;
  options.relative_tolerance = sizeof(T) == 4 ? kCgTolerance32 / 10 : kCgTolerance64 / 10;
  options.max_iterations = 10 * static_cast<int>(p);
  const SolveSummary summary = ConjugateGradient(op, g_test, x_test, options);
  EXPECT_TRUE(summary.converged()) << summary.message;
  const std::vector<double> x = Read(*test, x_test);
  auto x_ref = ref->Allocate(1, p), Ax = ref->Allocate(1, p);
  ref->Upload(x.data(), x_ref);
  CurvatureOperator<double> op_ref(f_ref, theta_ref, Curvature::kGaussNewton, 0.1);
  op_ref.Apply(x_ref, Ax);
  ref->Axpby(-1.0, g_ref, 1.0, Ax);
  EXPECT_LE(Norm(*ref, Ax) / Norm(*ref, g_ref), sizeof(T) == 4 ? kCgTolerance32 : kCgTolerance64)
      << "CG residual";
}

TEST_P(ObjectiveOnBackends, MatchesCpuDouble) {
  for (LossKind loss : {LossKind::kCrossEntropy, LossKind::kLogistic, LossKind::kMse}) {
    SCOPED_TRACE(Name(loss));
    if (GetParam().f32)
      CompareObjectives<float>(GetParam(), loss);
    else
      CompareObjectives<double>(GetParam(), loss);
  }
}

// Images pooled (max, then average with padding) and flattened before the MLP: the pooling
// ops as the engine composes them, with a partial last batch.
TEST_P(ObjectiveOnBackends, PooledModelMatchesCpuDouble) {
  const io::ModelSpec spec = io::ModelSpec::Parse(
      R"({"format": "lethe/1", "input": [2, 6, 5], "loss": "cross_entropy", "l2": 0.01,
          "layers": [{"type": "maxpool2d", "kernel": 3, "stride": [2, 1], "padding": 1},
                     {"type": "avgpool2d", "kernel": 2, "stride": 1, "padding": 1},
                     {"type": "flatten"},
                     {"type": "linear", "weight": "3.weight", "bias": "3.bias", "out": 8},
                     {"type": "tanh"},
                     {"type": "linear", "weight": "5.weight", "bias": "5.bias"}]})",
      "pooled.json");
  if (GetParam().f32)
    CompareObjectives<float>(GetParam(), LossKind::kCrossEntropy, &spec, 2 * 6 * 5);
  else
    CompareObjectives<double>(GetParam(), LossKind::kCrossEntropy, &spec, 2 * 6 * 5);
}

INSTANTIATE_TEST_SUITE_P(Backends, ObjectiveOnBackends, ::testing::ValuesIn(Candidates()),
                         CandidateName);

}  // namespace
}  // namespace lethe::kernels::testing
