// A Kronecker-factored preconditioner for conjugate gradient on C + λI (C the Hessian or
// Gauss-Newton matrix of the objective, which contains l2·I):
//
//   M = blockdiag_l(Γ_l ⊗ S_l) + (l2 + λ) I,
//
// with Γ_l, S_l the K-FAC factors of each layer that has them (Objective::KroneckerFactors;
// today the linear layers). On a
// layer's parameters as an out × k matrix V = [W | b] (the product Γ ⊗ S acts as V ↦ Γ V S),
// an eigendecomposition of the small output factor, Γ = E_Γᵀ diag(γ) E_Γ, and a Householder
// tridiagonalisation of the input factor, S = E_Sᵀ T E_S (T symmetric tridiagonal), give
// M in the rotated coordinates W = E_Γ V E_Sᵀ as W ↦ diag(γ) W T + s W: row a of W meets
// only the tridiagonal matrix γ_a T + s I (s = l2 + λ). Hence the exact inverse
//
//   M⁻¹ V = E_Γᵀ X E_S,   row a of X = (row a of E_Γ V E_Sᵀ) (γ_a T + s I)⁻¹,
//
// four GEMMs per layer and direction (the k × k ones for a group of directions at once) and
// out tridiagonal solves, O(k) each, with LDLᵀ factors computed once at setup.
// Why tridiagonal and not an eigendecomposition of S too: the QL iteration that turns T
// into eigenvalues and eigenvectors costs ~4× the reduction itself (0.25 s of a 0.3 s
// setup for k = 785 on 2 cores, in f32), and the solve never needs S's spectrum.
// Why it pays: on image-like data the input covariance S spans many orders of magnitude
// (blank pixels: only l2 left), which is what makes plain CG (and L-BFGS) slow; M removes it. M is
// symmetric positive definite (γ, σ ≥ 0, l2 + λ > 0), so preconditioned CG stays valid; it changes
// the iteration count, never the answer (CG still stops on the true residual ‖(C + λI)x − b‖).
#pragma once

#include <vector>

#include "engine/objective.h"
#include "engine/solvers/linear_operator.h"

namespace lethe {

struct KfacOptions {
  // The factors are averaged over at most this many examples (Objective::KroneckerFactors).
  // On digits784 PCG needs as many iterations with 2,048 of 10,000 rows as with all of
  // them (docs/performance.md), for a fifth of the setup.
  int64_t max_examples = 2048;
  void Validate() const;  // throws lethe::Error naming the bad field
};

// Everything a KfacPreconditioner holds, on the host in double: enough to rebuild it
// without its setup pass (one pass over the data, an eigendecomposition and a
// tridiagonalisation per layer). A stream of deletion requests reuses it across requests
// (tools/lethe/stream_cache.h): the input factor S does not depend on θ at all, and the
// output factor Γ moves by O(1/n) per single-example removal, which changes only how fast
// CG converges, never what it converges to (CG stops on the true residual).
struct KfacState {
  struct Layer {
    layers::KroneckerBlock block;
    int64_t k = 0;                         // the input factor's size (in, +1 with a bias)
    std::vector<double> out_vectors;       // out × out, E_Γ (rows)
    std::vector<double> in_vectors;        // k × k, E_S (rows)
    std::vector<double> pivots, multipliers;  // out × k
  };
  std::vector<Layer> layers;
  int64_t num_params = 0;
  double damping = 0;          // λ it was built for (l2 + λ is in the pivots)
  double l2 = 0;
  double uncovered_scale = 0;
  // Whether it was built for this objective's parameter layout and this λ: a state that
  // is not is never used (InverseHvp builds a fresh preconditioner instead).
  template <typename T>
  bool Fits(Objective<T>& objective, double damping) const;
};

template <typename T>
class KfacPreconditioner final : public LinearOperator<T> {
 public:
  // One pass over (at most options.max_examples rows of) the data (forward, and 2 ×
  // output-width backward passes), then an eigendecomposition of every Γ and a
  // tridiagonalisation of every S. `damping` is
  // λ (l2 comes from the objective).
  KfacPreconditioner(Objective<T>& objective, const kernels::Matrix<T>& theta, double damping,
                     const KfacOptions& options = {});

  // Rebuilt from a saved state (which must Fit the objective): no pass over the data.
  KfacPreconditioner(Objective<T>& objective, const KfacState& state);
  KfacState State(double damping, double l2) const;  // what this one holds, on the host

  int64_t size() const override { return num_params_; }
  kernels::Backend<T>& backend() const override { return backend_; }
  // out (m × p), row r = M⁻¹ V.row(r).
  void Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) override;
  double setup_seconds() const { return setup_seconds_; }

 private:
  struct Layer {
    layers::KroneckerBlock block;                // where its [W | b] sit in θ
    kernels::Matrix<T> out_vectors, in_vectors;  // E_Γ (out × out), E_S (k × k): rows
    kernels::Matrix<T> pivots, multipliers;      // out × k: LDLᵀ of γ_a T + s I, row a
    kernels::Matrix<T> z, t;                     // (group · out) × k workspaces
  };
  kernels::Backend<T>& backend_;
  ObjectiveOptions options_;  // the objective's, for its group_elements
  int64_t num_params_;
  std::vector<Layer> layers_;
  // Parameters in no Kronecker block (an embedding table): M is (l2 + λ) I on them, or I
  // when that is 0; `uncovered_scale` = 1/that, 0 when every parameter is in a block.
  double uncovered_scale_ = 0;
  double setup_seconds_ = 0;
};

}  // namespace lethe
