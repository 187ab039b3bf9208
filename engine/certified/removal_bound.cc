#include "engine/certified/removal_bound.h"

#include <Eigen/Cholesky>
#include <Eigen/Dense>
#include <Eigen/Eigenvalues>
#include <cmath>
#include <algorithm>
#include <limits>

#include "common/error.h"

namespace lethe::certified {

double HessianLipschitz(LossKind loss) {
  switch (loss) {
    case LossKind::kLogistic: return 0.25;
    case LossKind::kMse: return 0.0;
    case LossKind::kCrossEntropy: return 1.0 / std::sqrt(2.0);
  }
  return std::numeric_limits<double>::infinity();
}

std::string OutsideTheory(const Architecture& arch) {
  if (arch.layers.size() != 1 || arch.layers[0].type() != "linear")
    return "certified removal covers one linear layer and nothing else (this model has " +
           std::to_string(arch.layers.size()) + " layers): the theory needs the objective "
           "strongly convex in θ with a Lipschitz Hessian, and any layer before the linear one "
           "would either make it non-convex or, frozen, hold what it learned from the removed "
           "examples";
  if (arch.layers[0].frozen) return "its linear layer is frozen: nothing to remove from";
  if (!(arch.spec.l2 > 0))
    return "l2 = " + std::to_string(arch.spec.l2) + ": the theory needs a strongly convex "
           "objective, l2 > 0";
  return "";
}

namespace {
constexpr double kUnit = 0x1.0p-53;  // u, the unit roundoff of f64
// γ_j = j·u / (1 − j·u) (Higham, Accuracy and Stability of Numerical Algorithms, §3.4).
double Gamma(double j) { return j * kUnit / (1 - j * kUnit); }
}  // namespace

void GramSums(const double* X, int64_t m, int64_t d, bool ones_column, std::vector<double>& gram,
              double& frobenius2) {
  const int64_t k = d + (ones_column ? 1 : 0);
  LETHE_CHECK(static_cast<int64_t>(gram.size()) == k * k);
  if (m <= 0 || k <= 0) return;
  Eigen::MatrixXd Xt(m, k);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < d; ++j) Xt(i, j) = X[i * d + j];
    if (ones_column) Xt(i, d) = 1.0;
  }
  frobenius2 += Xt.squaredNorm();
  Eigen::MatrixXd G(k, k);
  G.setZero();
  G.selfadjointView<Eigen::Lower>().rankUpdate(Xt.transpose());
  G.triangularView<Eigen::StrictlyUpper>() = G.transpose();
  Eigen::Map<Eigen::MatrixXd>(gram.data(), k, k) += G;  // symmetric: either layout
}

SpectralBound DataSpectralNormUpperBound(const double* X, int64_t m, int64_t d, bool ones_column) {
  const int64_t k = d + (ones_column ? 1 : 0);
  if (m <= 0 || k <= 0) return {};
  std::vector<double> gram(static_cast<size_t>(k * k), 0.0);
  double frobenius2 = 0;
  GramSums(X, m, d, ones_column, gram, frobenius2);
  return SpectralNormUpperBoundOfGram(gram, k, m, frobenius2);
}

SpectralBound SpectralNormUpperBoundOfGram(const std::vector<double>& gram, int64_t k, int64_t m,
                                           double frobenius2) {
  if (m <= 0 || k <= 0) return {};
  LETHE_CHECK(static_cast<int64_t>(gram.size()) == k * k);
  if (!(m * kUnit < 0.01)) Fail("certified removal: too many rows for the rounding analysis");
  if (frobenius2 == 0) return {0, 0, 0};
  // G = fl(X̃ᵀX̃): |fl(G) − G| ≤ γ_m |X̃|ᵀ|X̃| elementwise for any summation order (also the
  // sums of several processes' partial Gram matrices), and ‖|X̃|ᵀ|X̃|‖₂ ≤ ‖|X̃|‖_F² = ‖X̃‖_F²,
  // so ‖fl(G) − G‖₂ ≤ γ_m·‖X̃‖_F² =: e_gram.
  const Eigen::MatrixXd G = Eigen::Map<const Eigen::MatrixXd>(gram.data(), k, k);
  const double e_gram = Gamma(static_cast<double>(m)) * frobenius2 * (1 + 1e-10);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(G, Eigen::EigenvaluesOnly);
  const double lambda = std::max(0.0, eig.eigenvalues().maxCoeff());
  const double g_diag = G.diagonal().cwiseAbs().maxCoeff();
  SpectralBound out;
  out.estimate = std::sqrt(lambda);
  // t² a relative 1e-7 above λ̂ (plus a floor at the scale of the rounding): far above
  // the eigensolver's error (~k·u·‖G‖), so the first factorisation normally succeeds;
  // when it does not, the margin grows tenfold.
  double margin = 1e-7 * lambda + 64 * Gamma(static_cast<double>(k + 1)) * frobenius2;
  for (int attempt = 0; attempt < 40; ++attempt, margin *= 10) {
    const double t2 = lambda + margin;
    Eigen::MatrixXd A = -G;
    A.diagonal().array() += t2;
    Eigen::LLT<Eigen::MatrixXd> llt(A);
    ++out.factorisations;
    if (llt.info() != Eigen::Success) continue;
    const Eigen::MatrixXd L = llt.matrixL();
    if (!(L.diagonal().array() > 0).all() || !L.allFinite()) continue;
    // Cholesky that runs to completion computes L̂ with L̂L̂ᵀ = Â + E, |E| ≤ γ_{k+1}|L̂||L̂ᵀ|
    // (Higham, Theorem 10.3), ‖|L̂||L̂ᵀ|‖₂ ≤ ‖L̂‖_F²; L̂L̂ᵀ ⪰ 0 gives λ_min(Â) ≥ −‖E‖₂.
    // Â = fl(t²I − fl(G)) differs from t²I − fl(G) on the diagonal only, by at most
    // u·(t² + max|g_ii|). So λ_max(fl(G)) ≤ t² + ‖E‖₂ + u(t² + max|g_ii|), and
    // λ_max(G) ≤ that + e_gram. The few additions below are rounded up by the final factor.
    const double e_chol = Gamma(static_cast<double>(k + 1)) * L.squaredNorm() * (1 + 1e-10);
    const double upper2 = t2 + e_chol + kUnit * (t2 + g_diag) + e_gram;
    out.upper = std::sqrt(upper2) * (1 + 1e-12);
    return out;
  }
  Fail("certified removal: could not certify an upper bound on ‖X‖₂ (Cholesky of t²I − XᵀX "
       "failed for every margin tried); the data may hold huge or non-finite values");
}

double LogitChangeQuarticNorm(const Architecture& arch, const std::vector<double>& v,
                              const double* X, int64_t m) {
  return std::sqrt(LogitChangeQuarticSum(arch, v, X, m));
}

double LogitChangeQuarticSum(const Architecture& arch, const std::vector<double>& v,
                             const double* X, int64_t m) {
  if (m <= 0) return 0;
  const LayerShape& layer = arch.layers.at(0);
  const int64_t in = layer.in_width(), out = layer.out_width();
  const TensorInfo& weight = layer.tensors.at(0);
  const bool bias = layer.tensors.size() == 2;
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> V(
      v.data() + weight.offset, out, in);
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Xm(
      X, m, in);
  Eigen::MatrixXd U = Xm * V.transpose();  // m × out: uᵢ = V xᵢ (+ c_v)
  if (bias) {
    Eigen::Map<const Eigen::RowVectorXd> c(v.data() + layer.tensors[1].offset, out);
    U.rowwise() += c;
  }
  double sum = 0;
  for (int64_t i = 0; i < m; ++i) {
    const double s = U.row(i).squaredNorm();
    sum += s * s;
  }
  return sum;
}

RemovalBound BoundRemoval(const Architecture& arch, const std::vector<double>& v, const double* X,
                          int64_t m, double solve_residual,
                          const SumOverProcesses& sum_over_processes) {
  const LayerShape& layer = arch.layers.at(0);
  const bool bias = layer.tensors.size() == 2;
  const int64_t d = layer.in_width(), k = d + (bias ? 1 : 0);
  const double gamma = HessianLipschitz(arch.spec.loss);
  // Every sum over the rows in one vector: G (k²), ‖X̃‖_F², m, Σ‖uᵢ‖⁴; summed over the
  // processes at once when the rows are spread over several.
  std::vector<double> sums(static_cast<size_t>(k * k + 3), 0.0);
  std::vector<double> gram(static_cast<size_t>(k * k), 0.0);
  double frobenius2 = 0;
  GramSums(X, m, d, bias, gram, frobenius2);
  std::copy(gram.begin(), gram.end(), sums.begin());
  sums[k * k] = frobenius2;
  sums[k * k + 1] = static_cast<double>(m);  // exact below 2⁵³
  sums[k * k + 2] = gamma == 0 ? 0.0 : LogitChangeQuarticSum(arch, v, X, m);
  if (sum_over_processes) sum_over_processes(sums.data(), static_cast<int64_t>(sums.size()));
  std::copy_n(sums.begin(), k * k, gram.begin());
  RemovalBound r;
  r.solve_residual = solve_residual;
  const SpectralBound s =
      SpectralNormUpperBoundOfGram(gram, k, static_cast<int64_t>(sums[k * k + 1]), sums[k * k]);
  r.x_norm_upper = s.upper;
  r.x_norm_estimate = s.estimate;
  // uᵢ is computed with a relative error of a few k·u; 1e-9 covers it for any width here
  // (and the few additions of the processes' partial sums).
  r.taylor = gamma == 0 ? 0.0 : 0.5 * gamma * s.upper * std::sqrt(sums[k * k + 2]) * (1 + 1e-9);
  r.beta = r.solve_residual + r.taylor;
  return r;
}

double CertificateConstant(double delta) {
  if (!(delta > 0 && delta < 1)) Fail("--delta = ", delta, ": must be in (0, 1)");
  return std::sqrt(2.0 * std::log(1.5 / delta));
}

double CertifiedEpsilon(double beta, double sigma, double delta) {
  return CertificateConstant(delta) * beta / sigma;
}

}  // namespace lethe::certified
