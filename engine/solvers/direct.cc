#include "engine/solvers/direct.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "common/error.h"

namespace lethe {

void DirectOptions::Validate() const {
  if (block_size < 1) Fail("DirectOptions::block_size = ", block_size, ": must be >= 1");
  if (max_params < 1) Fail("DirectOptions::max_params = ", max_params, ": must be >= 1");
}

namespace {

std::string Sci(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1e", x);
  return buf;
}

// |x| rounded up in its second significant digit: a damping strictly above |x|.
double RoundUp(double x) {
  x = std::abs(x);
  if (x == 0) return 0;
  const double unit = std::pow(10.0, std::floor(std::log10(x)) - 1);
  return std::ceil(x / unit * (1 + 1e-12)) * unit;
}

template <typename T>
std::vector<double> RowNormsSquared(kernels::Backend<T>& be, const kernels::Matrix<T>& A) {
  kernels::Matrix<T> out = be.Allocate(A.rows(), 1);
  be.RowDots(A, A, out);
  std::vector<T> host(A.rows());
  be.Download(out, host.data());
  return std::vector<double>(host.begin(), host.end());
}

}  // namespace

template <typename T>
void RecomputeResiduals(LinearOperator<T>& A, double damping, const kernels::Matrix<T>& B,
                        const kernels::Matrix<T>& X, SolveSummary* summary) {
  kernels::Backend<T>& be = A.backend();
  LETHE_CHECK(B.cols() == A.size() && X.rows() == B.rows() && X.cols() == B.cols());
  kernels::Matrix<T> R = be.Allocate(B.rows(), B.cols());
  A.Apply(X, R);
  if (damping != 0) be.Axpby(T(damping), X, T(1), R);
  be.Axpby(T(-1), B, T(1), R);  // r = (A + λI) x − b
  const std::vector<double> rr = RowNormsSquared(be, R), bb = RowNormsSquared(be, B);
  summary->relative_residuals.clear();
  summary->relative_residual = 0;
  for (size_t r = 0; r < rr.size(); ++r) {
    const double rel = bb[r] > 0 ? std::sqrt(rr[r] / bb[r]) : std::sqrt(rr[r]);
    summary->relative_residuals.push_back(rel);
    // max() would drop a NaN: a non-finite residual must show.
    if (!(rel <= summary->relative_residual)) summary->relative_residual = rel;
  }
}

template <typename T>
struct DirectFactorization<T>::Impl {
  kernels::Backend<T>* backend = nullptr;
  // After a successful Factorize: the Cholesky factor L (lower triangle), on the backend.
  kernels::Matrix<T> factor;
  bool ok = false;
  double smallest = std::numeric_limits<double>::quiet_NaN();
};

template <typename T>
DirectFactorization<T>::DirectFactorization() : impl_(std::make_unique<Impl>()) {}
template <typename T>
DirectFactorization<T>::~DirectFactorization() = default;
template <typename T>
DirectFactorization<T>::DirectFactorization(DirectFactorization&&) noexcept = default;
template <typename T>
DirectFactorization<T>& DirectFactorization<T>::operator=(DirectFactorization&&) noexcept = default;

template <typename T>
bool DirectFactorization<T>::factorized() const {
  return impl_->ok;
}
template <typename T>
int64_t DirectFactorization<T>::size() const {
  return impl_->factor.rows();
}
template <typename T>
const kernels::Matrix<T>& DirectFactorization<T>::factor() const {
  return impl_->factor;
}
template <typename T>
void DirectFactorization<T>::Adopt(kernels::Backend<T>& backend, kernels::Matrix<T> factor) {
  LETHE_CHECK(factor.rows() == factor.cols());
  *impl_ = Impl();
  impl_->backend = &backend;
  impl_->factor = factor;
  impl_->ok = true;
}
template <typename T>
double DirectFactorization<T>::smallest_eigenvalue() const {
  return impl_->smallest;
}

namespace {

// The p × p matrix of A on A's backend, symmetrised. Row i of A·E, E the identity rows
// [begin, begin + c), is A e_i = column i of A = row i of A (A symmetric up to
// rounding), so the products land directly in their rows: nothing crosses to the host
// but the identity blocks.
template <typename T>
kernels::Matrix<T> FormMatrix(LinearOperator<T>& A, const DirectOptions& options) {
  kernels::Backend<T>& be = A.backend();
  const int64_t p = A.size(), k = std::min(options.block_size, p);
  kernels::Matrix<T> a = be.Allocate(p, p);
  // Written out exactly symmetric: nothing to symmetrise.
  const char* phase = "forming the curvature matrix";
  ReportProgress(options.progress, phase, 0, p);
  if (options.dense_form && A.FormDense(a)) {
    ReportProgress(options.progress, phase, p, p);  // in one go: all p columns
    return a;
  }
  kernels::Matrix<T> E = be.Allocate(k, p);
  std::vector<T> host(static_cast<size_t>(k * p));
  for (int64_t begin = 0; begin < p; begin += k) {
    const int64_t c = std::min(k, p - begin);
    std::fill(host.begin(), host.begin() + c * p, T(0));
    for (int64_t i = 0; i < c; ++i) host[i * p + begin + i] = T(1);
    be.Upload(host.data(), E.Rows(0, c));
    A.Apply(E.Rows(0, c), a.Rows(begin, c));
    ReportProgress(options.progress, phase, begin + c, p);
  }
  // A Hessian is symmetric; the products are so only up to rounding. The factorisation
  // reads one triangle, so symmetrising makes it that of (A + Aᵀ)/2, not of one half.
  be.Symmetrize(a);
  return a;
}

}  // namespace

template <typename T>
SolveSummary DirectFactorization<T>::Factorize(LinearOperator<T>& A, const DirectOptions& options) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  const int64_t p = A.size();
  if (p > options.max_params)
    Fail("the direct solver forms the p × p matrix (", Sci(double(sizeof(T)) * p * p / 1e9),
         " GB for p = ", p, " parameters), above DirectOptions::max_params = ", options.max_params,
         "; use the cg solver for a model this large");
  kernels::Backend<T>& be = A.backend();
  Impl& impl = *impl_;
  impl = Impl();
  impl.backend = &be;
  SolveSummary summary;
  summary.solver = "direct";
  summary.iterations = 1;

  kernels::Matrix<T> a = FormMatrix(A, options);
  // Σ a_ij² is finite exactly when every entry is (short of overflow, which is no better).
  if (!std::isfinite(static_cast<double>(be.Dot(a, a)))) {
    summary.termination = Termination::kDiverged;
    summary.message = "the operator produced non-finite values (NaN or Inf in A·e_j)";
    return summary;
  }
  if (be.CholeskyFactor(a)) {
    impl.factor = a;
    impl.ok = true;
    summary.termination = Termination::kConverged;
  } else {
    // The failed factorisation overwrote A: form it again for the diagnosis (p more
    // operator applications, on the failure path only, rather than 2p² memory always).
    a = kernels::Matrix<T>();  // release it first: one p × p matrix at a time
    a = FormMatrix(A, options);
    kernels::Matrix<T> values = be.Allocate(1, p);
    be.SymmetricEigen(a, values, /*vectors=*/false);
    std::vector<T> host(static_cast<size_t>(p));
    be.Download(values, host.data());
    const double mu = host.front(), top = host.back();
    impl.smallest = mu;
    summary.termination = Termination::kNegativeCurvature;
    if (mu < 0)
      summary.message = "the operator is not positive definite: smallest eigenvalue " + Sci(mu) +
                        "; --damping " + Sci(RoundUp(mu)) +
                        " or more (added to any damping already used) would fix it";
    else  // Cholesky failed on rounding: singular to working precision.
      summary.message = "the operator is numerically singular: smallest eigenvalue " + Sci(mu) +
                        ", largest " + Sci(top) + "; add damping, e.g. --damping " +
                        Sci(RoundUp((sizeof(T) == 4 ? 1e-5 : 1e-8) * std::max(top, 1e-300)));
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

template <typename T>
void DirectFactorization<T>::Solve(const kernels::Matrix<T>& B, kernels::Matrix<T> X) const {
  const Impl& impl = *impl_;
  LETHE_CHECK(impl.ok, "Solve before a successful Factorize");
  const int64_t p = impl.factor.rows();
  LETHE_CHECK(B.cols() == p && X.rows() == B.rows() && X.cols() == p);
  kernels::Backend<T>& be = *impl.backend;
  if (X.data() != B.data()) be.Copy(B, X);
  be.CholeskySolve(impl.factor, X);
}

template <typename T>
SolveSummary DirectSolve(LinearOperator<T>& A, const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                         const DirectOptions& options) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  LETHE_CHECK(B.cols() == A.size() && X.rows() == B.rows() && X.cols() == B.cols());
  DirectFactorization<T> factorization;
  SolveSummary summary = factorization.Factorize(A, options);
  if (factorization.factorized())
    factorization.Solve(B, X);
  else
    A.backend().Fill(X, T(0));
  RecomputeResiduals(A, 0.0, B, X, &summary);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

#define LETHE_INSTANTIATE(T)                                                                 \
  template class DirectFactorization<T>;                                                     \
  template SolveSummary DirectSolve<T>(LinearOperator<T>&, const kernels::Matrix<T>&,        \
                                       kernels::Matrix<T>, const DirectOptions&);            \
  template void RecomputeResiduals<T>(LinearOperator<T>&, double, const kernels::Matrix<T>&, \
                                      const kernels::Matrix<T>&, SolveSummary*);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe
