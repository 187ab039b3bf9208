#include "engine/solvers/lanczos.h"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>

#include "common/error.h"
#include "engine/solvers/direct.h"

namespace lethe {

using kernels::Op;

void LanczosOptions::Validate() const {
  if (rank < 1) Fail("LanczosOptions::rank = ", rank, ": must be >= 1");
  if (iterations != 0 && iterations < rank)
    Fail("LanczosOptions::iterations = ", iterations,
         ": must be 0 (automatic) or >= rank = ", rank);
  if (!(damping >= 0) || !std::isfinite(damping))
    Fail("LanczosOptions::damping = ", damping, ": must be >= 0");
  if (!(relative_tolerance > 0))
    Fail("LanczosOptions::relative_tolerance = ", relative_tolerance, ": must be > 0");
}

namespace {

std::string Sci(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", x);
  return buf;
}

template <typename T>
struct Krylov {
  kernels::Matrix<T> Q;         // K × p, orthonormal rows
  Eigen::VectorXd alpha, beta;  // T's diagonal (K) and off-diagonal (K − 1)
  int restarts = 0;
};

// Removes from w (1 × p) its components along the rows of Q: w −= (w Qᵀ) Q, twice —
// one classical Gram-Schmidt pass loses orthogonality in proportion to the condition of
// the basis, a second restores it to working precision ("twice is enough").
template <typename T>
void Orthogonalise(kernels::Backend<T>& be, const kernels::Matrix<T>& Q, kernels::Matrix<T> w,
                   kernels::Matrix<T> coeffs) {
  if (Q.rows() == 0) return;
  kernels::Matrix<T> c = coeffs.Cols(0, Q.rows());
  for (int pass = 0; pass < 2; ++pass) {
    be.Gemm(Op::kNone, Op::kTranspose, T(1), w, Q, T(0), c);
    be.Gemm(Op::kNone, Op::kNone, T(-1), c, Q, T(1), w);
  }
}

// Gaussian entries by Box-Muller from the raw 64-bit draws: the same vector on every
// platform (std::normal_distribution is implementation-defined).
template <typename T>
void RandomRow(kernels::Backend<T>& be, std::mt19937_64& rng, kernels::Matrix<T> dst) {
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };  // (0,1)
  std::vector<T> host(dst.cols());
  for (T& x : host)
    x = static_cast<T>(std::sqrt(-2 * std::log(uniform())) * std::cos(2 * M_PI * uniform()));
  be.Upload(host.data(), dst);
}

// K steps of Lanczos with full reorthogonalisation, restarting on breakdown.
template <typename T>
Krylov<T> RunLanczos(LinearOperator<T>& A, int64_t K, uint64_t seed,
                     ProgressSink* progress = nullptr) {
  kernels::Backend<T>& be = A.backend();
  const int64_t p = A.size();
  LETHE_CHECK(K >= 1 && K <= p);
  Krylov<T> out;
  out.Q = be.Allocate(K, p);
  out.alpha.resize(K);
  out.beta = Eigen::VectorXd::Zero(std::max<int64_t>(K - 1, 0));
  kernels::Matrix<T> w = be.Allocate(1, p), coeffs = be.Allocate(1, K);
  std::mt19937_64 rng(seed);
  // β ≤ ε^{3/4}·‖A‖ is taken as 0: the Krylov space has closed (an invariant subspace).
  // Rounding leaves β ~ ε·‖A‖ there; a true coupling this small, dropped, moves the
  // eigenvalues by at most as much (2e-12·‖A‖ in double, 6e-6·‖A‖ in float).
  const double breakdown = std::pow(static_cast<double>(std::numeric_limits<T>::epsilon()), 0.75);
  double norm_estimate = 0;  // max |α|, β so far: a lower bound on ‖A‖

  // Writes a random unit vector orthogonal to Q's first j rows into row j.
  auto fresh_row = [&](int64_t j) {
    RandomRow(be, rng, w);
    Orthogonalise(be, out.Q.Rows(0, j), w, coeffs);
    const double norm = static_cast<double>(kernels::Norm(be, w));
    LETHE_CHECK(norm > 0);
    be.Axpby(T(1 / norm), w, T(0), out.Q.Row(j));
  };
  fresh_row(0);
  for (int64_t j = 0; j < K; ++j) {
    kernels::Matrix<T> q = out.Q.Row(j);
    A.Apply(q, w);
    ReportProgress(progress, "lanczos", j + 1, K);
    const double alpha = static_cast<double>(be.Dot(q, w));
    out.alpha(j) = alpha;
    be.Axpby(T(-alpha), q, T(1), w);
    if (j > 0) be.Axpby(T(-out.beta(j - 1)), out.Q.Row(j - 1), T(1), w);
    if (j == K - 1) break;
    // In exact arithmetic w ⟂ Q already; in floating point the three-term recurrence
    // loses orthogonality as Ritz values converge, producing spurious copies of them.
    Orthogonalise(be, out.Q.Rows(0, j + 1), w, coeffs);
    const double beta = static_cast<double>(kernels::Norm(be, w));
    norm_estimate = std::max({norm_estimate, std::abs(alpha), beta});
    if (!std::isfinite(beta)) Fail("Lanczos: the operator produced non-finite values");
    if (beta <= breakdown * norm_estimate) {
      out.beta(j) = 0;  // T splits into blocks; continue in the orthogonal complement
      ++out.restarts;
      fresh_row(j + 1);
    } else {
      out.beta(j) = beta;
      be.Axpby(T(1 / beta), w, T(0), out.Q.Row(j + 1));
    }
  }
  return out;
}

}  // namespace

template <typename T>
SolveSummary LanczosInverse<T>::Compute(LinearOperator<T>& A, const LanczosOptions& options) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  const int64_t p = A.size();
  if (options.rank > p)
    Fail("LanczosOptions::rank = ", options.rank, ": more than the ", p, " parameters");
  if (options.iterations > p)
    Fail("LanczosOptions::iterations = ", options.iterations, ": more than the ", p, " parameters");
  const bool full = options.rank == p;
  const double lambda = options.damping;
  if (!full && lambda == 0)
    Fail("LanczosOptions::damping = 0 with rank ", options.rank, " < ", p,
         " parameters: the discarded spectrum is inverted as 1/damping, so damping must be > 0");
  const int64_t K =
      options.iterations > 0 ? options.iterations : std::min(p, 2 * options.rank + 10);
  kernels::Backend<T>& be = A.backend();
  backend_ = &be;
  damping_ = lambda;
  full_rank_ = full;
  ready_ = false;
  SolveSummary summary;
  summary.solver = "lanczos";
  summary.iterations = static_cast<int>(K);

  tolerance_ = options.relative_tolerance;
  ReportProgress(options.progress, "lanczos", 0, K);
  const Krylov<T> krylov = RunLanczos(A, K, options.seed, options.progress);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig;
  eig.computeFromTridiagonal(krylov.alpha, krylov.beta, Eigen::ComputeEigenvectors);
  const Eigen::VectorXd& theta = eig.eigenvalues();  // ascending
  // Keep the largest |θ|: the discarded ones are then the closest to the 0 they are
  // replaced by. Present the kept ones largest θ first.
  std::vector<int64_t> order(K);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return std::abs(theta(a)) > std::abs(theta(b)); });
  order.resize(options.rank);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return theta(a) > theta(b); });

  // V = S_keptᵀ Q: the Ritz vectors, formed on the device from the K × rank coefficients.
  const int64_t r = options.rank;
  std::vector<T> s_host(static_cast<size_t>(r * K));
  theta_.assign(r, 0);
  for (int64_t i = 0; i < r; ++i) {
    theta_[i] = theta(order[i]);
    for (int64_t j = 0; j < K; ++j)
      s_host[i * K + j] = static_cast<T>(eig.eigenvectors()(j, order[i]));
  }
  kernels::Matrix<T> S = be.Allocate(r, K);
  be.Upload(s_host.data(), S);
  V_ = be.Allocate(r, p);
  be.Gemm(Op::kNone, Op::kNone, T(1), S, krylov.Q, T(0), V_);

  const double min_kept = theta_.back(), min_ritz = theta(0);
  int negative = 0;
  for (double t : theta_) negative += t < 0;
  summary.message = "rank " + std::to_string(r) + " of " + std::to_string(p) + " from " +
                    std::to_string(K) + " Lanczos steps (" + std::to_string(krylov.restarts) +
                    " restarts); kept eigenvalues " + Sci(theta_.front()) + " … " + Sci(min_kept);
  if (min_ritz < 0)
    summary.message += "; the operator is indefinite: smallest Ritz value " + Sci(min_ritz) + " (" +
                       std::to_string(negative) + " negative kept)";
  if (min_kept + lambda <= 0) {
    summary.termination = Termination::kNegativeCurvature;
    summary.message += "; damping " + Sci(lambda) +
                       " leaves (A + damping·I) indefinite: use --damping above " + Sci(-min_kept);
    V_ = kernels::Matrix<T>();
    theta_.clear();
    summary.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return summary;
  }
  // W = diag(d) V, d_r = 1/(θ_r + λ) − 1/λ (the complement term (1/λ) b added in Solve),
  // or d_r = 1/(θ_r + λ) at full rank where there is no complement.
  W_ = be.Allocate(r, p);
  for (int64_t i = 0; i < r; ++i) {
    const double d = 1 / (theta_[i] + lambda) - (full ? 0.0 : 1 / lambda);
    be.Axpby(T(d), V_.Row(i), T(0), W_.Row(i));
  }
  ready_ = true;
  // Full rank is the exact solve. Below it nothing is vouched for until a residual is
  // computed against a right-hand side (Judge).
  summary.termination = full ? Termination::kConverged : Termination::kInexact;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

template <typename T>
void LanczosInverse<T>::Judge(SolveSummary* summary) const {
  if (!ready_ || full_rank_) return;
  const std::string base = summary->message;
  if (summary->residual_computed() && summary->relative_residual <= tolerance_) {
    summary->termination = Termination::kConverged;
    return;
  }
  summary->termination = Termination::kInexact;
  summary->message =
      base + "; a low-rank approximation: " +
      (summary->residual_computed()
           ? "relative residual " + Sci(summary->relative_residual) + " above the tolerance " +
                 Sci(tolerance_)
           : std::string("its residual was not computed")) +
      " (raise --rank, or use --solver cg for the exact answer)";
}

template <typename T>
void LanczosInverse<T>::Solve(const kernels::Matrix<T>& B, kernels::Matrix<T> X) const {
  LETHE_CHECK(ready_, "Solve before a successful Compute");
  LETHE_CHECK(B.cols() == V_.cols() && X.rows() == B.rows() && X.cols() == B.cols());
  kernels::Backend<T>& be = *backend_;
  kernels::Matrix<T> C = be.Allocate(B.rows(), V_.rows());
  be.Gemm(Op::kNone, Op::kTranspose, T(1), B, V_, T(0), C);  // C = B Vᵀ: coordinates in V
  if (full_rank_)
    be.Fill(X, T(0));
  else
    be.Axpby(T(1 / damping_), B, T(0), X);              // (1/λ) b
  be.Gemm(Op::kNone, Op::kNone, T(1), C, W_, T(1), X);  // + Vᵀ diag(d) V b
}

template <typename T>
SolveSummary LanczosSolve(LinearOperator<T>& A, const kernels::Matrix<T>& B, kernels::Matrix<T> X,
                          const LanczosOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  LETHE_CHECK(B.cols() == A.size() && X.rows() == B.rows() && X.cols() == B.cols());
  LanczosInverse<T> inverse;
  SolveSummary summary = inverse.Compute(A, options);
  if (inverse.ready())
    inverse.Solve(B, X);
  else
    A.backend().Fill(X, T(0));
  RecomputeResiduals(A, options.damping, B, X, &summary);
  inverse.Judge(&summary);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

namespace {

// Lanczos on L⁻¹ A L⁻ᵀ (M = L Lᵀ) carried in z = L y, u = M⁻¹ z (see the header); the
// tridiagonal T it returns has the Ritz values of M⁻¹A. Stops early when the Krylov
// space closes (T is then exact on an invariant subspace).
template <typename T>
void PreconditionedLanczos(LinearOperator<T>& A, LinearOperator<T>& M, int64_t K, uint64_t seed,
                           Eigen::VectorXd* alpha, Eigen::VectorXd* beta) {
  kernels::Backend<T>& be = A.backend();
  const int64_t p = A.size();
  kernels::Matrix<T> Z = be.Allocate(K + 1, p), U = be.Allocate(K + 1, p);
  kernels::Matrix<T> w = be.Allocate(1, p), t = be.Allocate(1, p), coeffs = be.Allocate(1, K + 1);
  std::mt19937_64 rng(seed);
  const double breakdown = std::pow(static_cast<double>(std::numeric_limits<T>::epsilon()), 0.75);
  std::vector<double> a, b;
  // z_1 random, u_1 = M⁻¹ z_1, both scaled to z_1ᵀ u_1 = 1.
  RandomRow(be, rng, w);
  M.Apply(w, t);
  double norm = std::sqrt(static_cast<double>(be.Dot(w, t)));
  LETHE_CHECK(norm > 0 && std::isfinite(norm), "the preconditioner is not positive definite");
  be.Axpby(T(1 / norm), w, T(0), Z.Row(0));
  be.Axpby(T(1 / norm), t, T(0), U.Row(0));
  double scale = 0;  // max |α|, β so far
  for (int64_t j = 0; j < K; ++j) {
    A.Apply(U.Row(j), w);
    const double alpha_j = static_cast<double>(be.Dot(U.Row(j), w));
    if (!std::isfinite(alpha_j)) Fail("Lanczos: the operator produced non-finite values");
    a.push_back(alpha_j);
    if (j == K - 1) break;
    // w −= Σ_i (wᵀ u_i) z_i over all earlier vectors (covers α_j z_j + β_{j−1} z_{j−1}
    // and restores orthogonality in the M⁻¹ inner product), twice.
    kernels::Matrix<T> c = coeffs.Cols(0, j + 1);
    for (int pass = 0; pass < 2; ++pass) {
      be.Gemm(Op::kNone, Op::kTranspose, T(1), w, U.Rows(0, j + 1), T(0), c);
      be.Gemm(Op::kNone, Op::kNone, T(-1), c, Z.Rows(0, j + 1), T(1), w);
    }
    M.Apply(w, t);
    const double wt = static_cast<double>(be.Dot(w, t));
    const double beta_j = std::sqrt(std::max(wt, 0.0));
    scale = std::max({scale, std::abs(alpha_j), beta_j});
    if (!(beta_j > breakdown * scale)) break;  // invariant subspace: T is exact on it
    b.push_back(beta_j);
    be.Axpby(T(1 / beta_j), w, T(0), Z.Row(j + 1));
    be.Axpby(T(1 / beta_j), t, T(0), U.Row(j + 1));
  }
  *alpha = Eigen::Map<const Eigen::VectorXd>(a.data(), static_cast<int64_t>(a.size()));
  *beta = Eigen::Map<const Eigen::VectorXd>(b.data(), static_cast<int64_t>(a.size()) - 1);
}

}  // namespace

template <typename T>
double EstimateLargestEigenvalue(LinearOperator<T>& A, int iterations, uint64_t seed,
                                 LinearOperator<T>* preconditioner) {
  if (iterations < 1) Fail("Lanczos iterations = ", iterations, ": must be >= 1");
  const int64_t K = std::min<int64_t>(iterations, A.size());
  Eigen::VectorXd alpha, beta;
  if (preconditioner) {
    LETHE_CHECK(preconditioner->size() == A.size());
    PreconditionedLanczos(A, *preconditioner, K, seed, &alpha, &beta);
  } else {
    const Krylov<T> krylov = RunLanczos(A, K, seed);
    alpha = krylov.alpha, beta = krylov.beta;
  }
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig;
  eig.computeFromTridiagonal(alpha, beta, Eigen::EigenvaluesOnly);
  return eig.eigenvalues()(eig.eigenvalues().size() - 1);
}

#define LETHE_INSTANTIATE(T)                                                           \
  template class LanczosInverse<T>;                                                    \
  template SolveSummary LanczosSolve<T>(LinearOperator<T>&, const kernels::Matrix<T>&, \
                                        kernels::Matrix<T>, const LanczosOptions&);    \
  template double EstimateLargestEigenvalue<T>(LinearOperator<T>&, int, uint64_t,   \
                                               LinearOperator<T>*);
LETHE_INSTANTIATE(float)
LETHE_INSTANTIATE(double)
#undef LETHE_INSTANTIATE

}  // namespace lethe
