#include "engine/solvers/cg.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

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
  // rᵀz for rows [0, k), z = M⁻¹ r computed there.
  auto precondition = [&](const std::vector<double>& rr, int64_t k) {
    if (!M) return std::vector<double>(rr.begin(), rr.begin() + k);
    M->Apply(R.Rows(0, k), Z.Rows(0, k));
    be.RowDots(R.Rows(0, k), Z.Rows(0, k), scalars.Rows(0, k));
    std::vector<T> host(k);
    be.Download(scalars.Rows(0, k), host.data());
    return std::vector<double>(host.begin(), host.end());
  };
  std::vector<double> bb = RowNormsSquared(be, B, scalars);
  std::vector<double> rr = RowNormsSquared(be, R, scalars);
  std::vector<double> rz = precondition(rr, m);
  be.Copy(Z, P);

  // The right-hand sides still iterating are kept in rows [0, k) of X, R, Z and P: one that
  // converges (or fails) is swapped behind them, so each application of A costs k
  // directions, not m, and a solve that converges early stops costing passes over the data.
  // order[i] is the caller's index of row i; X is put back in the caller's order at the end.
  std::vector<int64_t> order(m);
  for (int64_t r = 0; r < m; ++r) order[r] = r;
  std::vector<kernels::Matrix<T>> rows_of = {X, R, P};
  if (M) rows_of.push_back(Z);
  kernels::Matrix<T> spare = be.Allocate(1, p);
  auto swap_rows = [&](int64_t a, int64_t b) {
    if (a == b) return;
    for (const kernels::Matrix<T>& W : rows_of) {
      be.Copy(W.Row(a), spare);
      be.Copy(W.Row(b), W.Row(a));
      be.Copy(spare, W.Row(b));
    }
    std::swap(order[a], order[b]);
    std::swap(bb[a], bb[b]), std::swap(rr[a], rr[b]), std::swap(rz[a], rz[b]);
  };
  summary.rhs_iterations.assign(m, 0);
  int64_t k = m;
  // Retires the rows i < k with stop[i] set, last first, so every swap is with a row
  // already looked at.
  auto retire = [&](const std::vector<char>& stop) {
    for (int64_t i = k - 1; i >= 0; --i) {
      if (!stop[i]) continue;
      summary.rhs_iterations[order[i]] = summary.iterations;
      swap_rows(i, --k);
    }
  };
  auto converged = [&](int64_t r) {
    return std::sqrt(rr[r]) <= options.relative_tolerance * std::sqrt(bb[r]) || bb[r] == 0;
  };
  std::vector<char> stop(m);
  for (int64_t r = 0; r < m; ++r) stop[r] = converged(r);
  retire(stop);

  summary.termination = Termination::kConverged;
  ReportProgress(options.progress, "cg", 0, options.max_iterations);
  while (k > 0) {
    if (summary.iterations >= options.max_iterations) {
      summary.termination = Termination::kMaxIterations;
      break;
    }
    ++summary.iterations;
    const kernels::Matrix<T> Pk = P.Rows(0, k), APk = AP.Rows(0, k), Rk = R.Rows(0, k);
    A.Apply(Pk, APk);
    ReportProgress(options.progress, "cg", summary.iterations, options.max_iterations);
    be.RowDots(Pk, APk, scalars.Rows(0, k));
    std::vector<T> pap_host(k);
    be.Download(scalars.Rows(0, k), pap_host.data());
    stop.assign(k, 0);
    for (int64_t r = 0; r < k; ++r) {
      const double pap = pap_host[r];
      if (!std::isfinite(pap)) {
        summary.termination = Termination::kDiverged;
        summary.message = "pᵀAp is not finite (right-hand side " + std::to_string(order[r]) + ")";
        stop[r] = 1;
        continue;
      }
      if (pap <= 0) {
        summary.termination = Termination::kNegativeCurvature;
        summary.message = "the operator is not positive definite: pᵀAp = " + std::to_string(pap) +
                          " <= 0 at iteration " + std::to_string(summary.iterations) +
                          " (right-hand side " + std::to_string(order[r]) +
                          "); add damping or use the Gauss-Newton curvature";
        stop[r] = 1;
        continue;
      }
      const T alpha = T(rz[r] / pap);
      be.Axpby(alpha, P.Row(r), T(1), X.Row(r));
      be.Axpby(-alpha, AP.Row(r), T(1), R.Row(r));
    }
    const std::vector<double> rr_k = RowNormsSquared(be, Rk, scalars.Rows(0, k));
    std::copy(rr_k.begin(), rr_k.end(), rr.begin());
    for (int64_t r = 0; r < k; ++r) stop[r] = stop[r] || converged(r);
    retire(stop);
    if (k == 0) break;
    const std::vector<double> rz_new = precondition(rr, k);
    stop.assign(k, 0);
    for (int64_t r = 0; r < k; ++r) {
      if (!(rz_new[r] > 0) || !std::isfinite(rz_new[r])) {
        summary.termination = Termination::kDiverged;
        summary.message = "the preconditioner gave rᵀM⁻¹r = " + std::to_string(rz_new[r]) +
                          " (right-hand side " + std::to_string(order[r]) + ")";
        stop[r] = 1;
        continue;
      }
      const double beta = rz_new[r] / rz[r];
      rz[r] = rz_new[r];
      be.Axpby(T(1), Z.Row(r), T(beta), P.Row(r));  // p = z + β p
    }
    retire(stop);
  }
  for (int64_t r = 0; r < k; ++r) summary.rhs_iterations[order[r]] = summary.iterations;
  // Back to the caller's order (each swap puts one row in its place).
  for (int64_t i = 0; i < m; ++i)
    while (order[i] != i) swap_rows(i, order[i]);
  if (summary.termination != Termination::kConverged && summary.message.empty())
    summary.message = "not converged after " + std::to_string(summary.iterations) +
                      " iterations; raise --max-iterations or add damping";

  // The recursive residual drifts from the true one in finite precision: report the true one.
  if (!options.check_residual) {
    summary.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return summary;
  }
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
