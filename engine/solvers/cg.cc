#include "engine/solvers/cg.h"

#include <chrono>
#include <cmath>

#include "common/error.h"

namespace lethe {

void CgOptions::Validate() const {
  if (!(relative_tolerance > 0))
    Fail("CgOptions::relative_tolerance = ", relative_tolerance, ": must be > 0");
  if (max_iterations < 1) Fail("CgOptions::max_iterations = ", max_iterations, ": must be >= 1");
}

namespace {
template <typename T>
std::vector<double> RowNormsSquared(kernels::Backend<T>& be, const kernels::Matrix<T>& A,
                                    kernels::Matrix<T> scratch) {
  be.RowDots(A, A, scratch);
  std::vector<T> host(A.rows());
  be.Download(scratch, host.data());
  return std::vector<double>(host.begin(), host.end());
}
}  // namespace

template <typename T>
SolveSummary ConjugateGradient(LinearOperator<T>& A, const kernels::Matrix<T>& B,
                               kernels::Matrix<T> X, const CgOptions& options,
                               LinearOperator<T>* M) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  kernels::Backend<T>& be = A.backend();
  const int64_t m = B.rows(), p = B.cols();
  LETHE_CHECK(p == A.size() && X.rows() == m && X.cols() == p);
  LETHE_CHECK(!M || M->size() == p);
  SolveSummary summary;
  summary.solver = "cg";

  kernels::Matrix<T> R = be.Allocate(m, p), P = be.Allocate(m, p), AP = be.Allocate(m, p);
  kernels::Matrix<T> scalars = be.Allocate(m, 1);
  // r = b − A x; from x = 0 (the usual start) r = b without a pass over the data.
  be.Copy(B, R);
  bool zero_start = true;
  for (double xx : RowNormsSquared(be, X, scalars)) zero_start = zero_start && xx == 0;
  if (!zero_start) {
    A.Apply(X, AP);
    be.Axpby(T(-1), AP, T(1), R);
  }
  // z = M⁻¹ r; without a preconditioner z is r itself and rᵀz = rᵀr.
  kernels::Matrix<T> Z = M ? be.Allocate(m, p) : R;
  auto precondition = [&](const std::vector<double>& rr) {
    if (!M) return rr;
    M->Apply(R, Z);
    be.RowDots(R, Z, scalars);
    std::vector<T> host(m);
    be.Download(scalars, host.data());
    return std::vector<double>(host.begin(), host.end());
  };
  const std::vector<double> bb = RowNormsSquared(be, B, scalars);
  std::vector<double> rr = RowNormsSquared(be, R, scalars);
  std::vector<double> rz = precondition(rr);
  be.Copy(Z, P);
  std::vector<bool> active(m);
  auto converged = [&](int64_t r) {
    return std::sqrt(rr[r]) <= options.relative_tolerance * std::sqrt(bb[r]) || bb[r] == 0;
  };
  int64_t n_active = 0;
  for (int64_t r = 0; r < m; ++r) n_active += (active[r] = !converged(r));

  summary.termination = Termination::kConverged;
  ReportProgress(options.progress, "cg", 0, options.max_iterations);
  while (n_active > 0) {
    if (summary.iterations >= options.max_iterations) {
      summary.termination = Termination::kMaxIterations;
      break;
    }
    ++summary.iterations;
    A.Apply(P, AP);
    ReportProgress(options.progress, "cg", summary.iterations, options.max_iterations);
    be.RowDots(P, AP, scalars);
    std::vector<T> pap_host(m);
    be.Download(scalars, pap_host.data());
    for (int64_t r = 0; r < m; ++r) {
      if (!active[r]) continue;
      const double pap = pap_host[r];
      if (!std::isfinite(pap)) {
        summary.termination = Termination::kDiverged;
        summary.message = "pᵀAp is not finite (right-hand side " + std::to_string(r) + ")";
        active[r] = false, --n_active;
        continue;
      }
      if (pap <= 0) {
        summary.termination = Termination::kNegativeCurvature;
        summary.message = "the operator is not positive definite: pᵀAp = " + std::to_string(pap) +
                          " <= 0 at iteration " + std::to_string(summary.iterations) +
                          " (right-hand side " + std::to_string(r) +
                          "); add damping or use the Gauss-Newton curvature";
        active[r] = false, --n_active;
        continue;
      }
      const T alpha = T(rz[r] / pap);
      be.Axpby(alpha, P.Row(r), T(1), X.Row(r));
      be.Axpby(-alpha, AP.Row(r), T(1), R.Row(r));
    }
    rr = RowNormsSquared(be, R, scalars);
    for (int64_t r = 0; r < m; ++r)
      if (active[r] && converged(r)) active[r] = false, --n_active;
    if (n_active == 0) break;
    const std::vector<double> rz_new = precondition(rr);
    for (int64_t r = 0; r < m; ++r) {
      if (!active[r]) continue;
      if (!(rz_new[r] > 0) || !std::isfinite(rz_new[r])) {
        summary.termination = Termination::kDiverged;
        summary.message = "the preconditioner gave rᵀM⁻¹r = " + std::to_string(rz_new[r]) +
                          " (right-hand side " + std::to_string(r) + ")";
        active[r] = false, --n_active;
        continue;
      }
      const double beta = rz_new[r] / rz[r];
      rz[r] = rz_new[r];
      be.Axpby(T(1), Z.Row(r), T(beta), P.Row(r));  // p = z + β p
    }
  }
  if (summary.termination != Termination::kConverged && summary.message.empty())
    summary.message = "not converged after " + std::to_string(summary.iterations) +
                      " iterations; raise --max-iterations or add damping";

  // The recursive residual drifts from the true one in finite precision: report the true one.
  A.Apply(X, AP);
  be.Copy(B, R);
  be.Axpby(T(-1), AP, T(1), R);
  const std::vector<double> res = RowNormsSquared(be, R, scalars);
  summary.relative_residual = 0;
  for (int64_t r = 0; r < m; ++r) {
    const double rel = bb[r] > 0 ? std::sqrt(res[r] / bb[r]) : std::sqrt(res[r]);
    summary.relative_residuals.push_back(rel);
    summary.relative_residual = std::max(summary.relative_residual, rel);
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

template SolveSummary ConjugateGradient<float>(LinearOperator<float>&,
                                               const kernels::Matrix<float>&,
                                               kernels::Matrix<float>, const CgOptions&,
                                               LinearOperator<float>*);
template SolveSummary ConjugateGradient<double>(LinearOperator<double>&,
                                                const kernels::Matrix<double>&,
                                                kernels::Matrix<double>, const CgOptions&,
                                                LinearOperator<double>*);

}  // namespace lethe
