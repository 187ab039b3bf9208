// The certificate of a Newton removal (Guo, Goldstein, Hannun & van der Maaten, "Certified
// Data Removal from Machine Learning Models", ICML 2020; docs/privacy.md and docs/maths.md,
// "Certified removal").
//
// A certified model is one linear layer z = W x + c (bias optional) trained on the sum-form
// objective
//   L_b(θ; D) = Σ_{i∈D} l(zᵢ, yᵢ) + (|D|·l2/2)‖θ‖² + bᵀθ,   b ~ N(0, σ²I),
// (lethe's mean-form objective times |D|). Removing a set S leaves the kept objective
// L_b(·; D∖S), whose regulariser counts the kept examples m = |D∖S| (Guo et al.'s λ(n−1)),
// and whose b is unchanged. The Newton step θ⁻ = θ − v with v ≈ H⁻¹Δ, Δ = ∇L_b(θ; D∖S) and
// H = ∇²L_b(θ; D∖S), leaves the gradient residual
//   ∇L_b(θ⁻; D∖S) = (Δ − Hv) − ∫₀¹ (H(θ − t v) − H(θ)) v dt,
// and when the loss's Hessian in z is γ-Lipschitz (‖∇²l(z) − ∇²l(z′)‖₂ ≤ γ‖z − z′‖₂),
//   ‖∇L_b(θ⁻; D∖S)‖ ≤ ‖Δ − Hv‖ + (γ/2)·‖X̃‖₂·(Σᵢ ‖uᵢ‖⁴)^½,   uᵢ = V x̃ᵢ
// (V: v as the layer's [W c] matrix, x̃ᵢ = [xᵢ; 1] with a bias, X̃ the kept rows x̃ᵢᵀ): the
// proof is in docs/maths.md. With ‖xᵢ‖ ≤ 1 and one output this is at most half of Guo et
// al.'s Corollary 1, γ‖X‖₂‖H⁻¹Δ‖‖XH⁻¹Δ‖.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/ops.h"
#include "engine/architecture.h"

namespace lethe::certified {

// γ: the Lipschitz constant, in the spectral norm, of the per-example loss's Hessian in the
// logits z. logistic: 1/4 (Guo et al.'s value; the exact one, max|σ''|, is 1/(6√3)); mse: 0
// (constant Hessian); cross_entropy: 1/√2 (derived in docs/maths.md, a safe upper bound).
double HessianLipschitz(LossKind loss);

// Empty when the theory covers the architecture; else why not, in a sentence.
std::string OutsideTheory(const Architecture& arch);

// A guaranteed upper bound on ‖X̃‖₂, the largest singular value of the m × k matrix X̃ (the
// m rows of X, m × d row-major, with a column of ones appended when `ones_column`).
// The largest eigenvalue λ̂ of G = X̃ᵀX̃ is estimated by a dense symmetric eigensolver, then
// certified: Cholesky of t²I − G succeeds for t² a little above λ̂ (so t²I − G ≻ 0, up to
// the rounding of forming G and of the factorisation, which are bounded and added:
// docs/maths.md). Power iteration alone underestimates ‖X‖₂ and would make the
// certificate optimistic.
struct SpectralBound {
  double estimate = 0;  // √λ̂
  double upper = 0;     // ≥ ‖X̃‖₂, guaranteed
  int factorisations = 0;
};
SpectralBound DataSpectralNormUpperBound(const double* X, int64_t m, int64_t d, bool ones_column);

// The two halves of DataSpectralNormUpperBound, for rows spread over processes
// (docs/distributed.md): GramSums adds the rows' G = X̃ᵀX̃ (k × k, row-major, symmetric,
// k = d + 1 with the ones column) and ‖X̃‖_F² into `gram` and `frobenius2`; the sums of
// every process's rows, in any order, satisfy the same rounding bound as one process's
// (|fl(G) − G| ≤ γ_m|X̃|ᵀ|X̃| holds for any summation order of the m rows' products).
// SpectralNormUpperBoundOfGram certifies the bound from the summed G over m rows.
void GramSums(const double* X, int64_t m, int64_t d, bool ones_column, std::vector<double>& gram,
              double& frobenius2);
SpectralBound SpectralNormUpperBoundOfGram(const std::vector<double>& gram, int64_t k, int64_t m,
                                           double frobenius2);

// (Σᵢ ‖uᵢ‖⁴)^½ with uᵢ = V x̃ᵢ: the change of example i's logits along the step v (θ layout
// of the single linear layer in `arch`).
double LogitChangeQuarticNorm(const Architecture& arch, const std::vector<double>& v,
                              const double* X, int64_t m);
// Σᵢ ‖uᵢ‖⁴ over the rows X (the square of LogitChangeQuarticNorm): a sum over rows, which
// processes holding parts of the rows add.
double LogitChangeQuarticSum(const Architecture& arch, const std::vector<double>& v,
                             const double* X, int64_t m);

struct RemovalBound {
  double solve_residual = 0;    // ‖Δ − Hv‖ (sum form), as computed
  double taylor = 0;            // (γ/2)·‖X̃‖₂ᵘᵖ·(Σ‖uᵢ‖⁴)^½
  double x_norm_upper = 0;
  double x_norm_estimate = 0;
  double beta = 0;              // solve_residual + taylor: bounds ‖∇L_b(θ⁻; D∖S)‖
};
// The bound for a step v over the kept rows X (m × d), given ‖Δ − Hv‖ in sum form.
// Under mpirun each process passes its own kept rows and `sum_over_processes` (an
// allreduce-sum of doubles in a fixed order, the same bits on every process): the rows'
// Gram matrix, ‖X̃‖_F², their count and Σ‖uᵢ‖⁴ are summed over all processes in one call
// (k² + 3 values), and every process certifies the same bound from the same sums. Empty
// (one process): the rows given are all of them.
using SumOverProcesses = std::function<void(double* values, int64_t count)>;
RemovalBound BoundRemoval(const Architecture& arch, const std::vector<double>& v, const double* X,
                          int64_t m, double solve_residual,
                          const SumOverProcesses& sum_over_processes = {});

// c = √(2 ln(1.5/δ)) (Guo et al., Theorem 3: b ~ N(0, (cβ/ε)²I) makes a removal with
// gradient residual ≤ β (ε, δ)-certified, δ = 1.5·e^{−c²/2}).
double CertificateConstant(double delta);
// ε = c·β/σ.
double CertifiedEpsilon(double beta, double sigma, double delta);

}  // namespace lethe::certified
