#include "engine/kfac_preconditioner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace lethe {

using kernels::Op;

namespace {
template <typename T>
std::vector<double> Eigendecompose(kernels::Backend<T>& be, kernels::Matrix<T> A) {
  kernels::Matrix<T> values = be.Allocate(1, A.rows());
  be.SymmetricEigen(A, values, /*vectors=*/true);
  std::vector<T> host(static_cast<size_t>(A.rows()));
  be.Download(values, host.data());
  // Both factors are Gram matrices (positive semidefinite): negative values are rounding.
  std::vector<double> out;
  for (T v : host) out.push_back(std::max(0.0, static_cast<double>(v)));
  return out;
}

// S = Eᵀ T E (rows of E in A on return); T's diagonal and off-diagonal in double.
template <typename T>
void Tridiagonalize(kernels::Backend<T>& be, kernels::Matrix<T> A, std::vector<double>* diag,
                    std::vector<double>* off) {
  const int64_t k = A.rows();
  kernels::Matrix<T> d = be.Allocate(1, k), e = be.Allocate(1, k);
  be.SymmetricTridiagonal(A, d, e);
  std::vector<T> host(static_cast<size_t>(k));
  be.Download(d, host.data());
  diag->assign(host.begin(), host.end());
  be.Download(e, host.data());
  off->assign(host.begin(), host.end());
}
}  // namespace

void KfacOptions::Validate() const {
  if (max_examples < 1) Fail("--kfac-examples = ", max_examples, ": must be >= 1");
}

template <typename T>
KfacPreconditioner<T>::KfacPreconditioner(Objective<T>& objective, const kernels::Matrix<T>& theta,
                                          double damping, const KfacOptions& options)
    : backend_(objective.backend()),
      options_(objective.options()),
      num_params_(objective.num_params()) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  std::vector<kernels::Matrix<T>> gammas, inputs;
  objective.KroneckerFactors(theta, &gammas, &inputs, options.max_examples);
  const std::vector<layers::KroneckerBlock> blocks = objective.KroneckerBlocks();
  LETHE_CHECK(blocks.size() == gammas.size() && blocks.size() == inputs.size());
  size_t factor = 0;
  int64_t covered = 0;
  for (const layers::KroneckerBlock& shape : blocks) {
    covered += shape.out * shape.k();
    Layer layer;
    layer.block = shape;
    layer.out_vectors = gammas[factor];
    layer.in_vectors = inputs[factor];
    ++factor;
    const std::vector<double> gamma = Eigendecompose(backend_, layer.out_vectors);
    const int64_t out = shape.out, k = layer.in_vectors.rows();
    std::vector<double> diag, off;
    Tridiagonalize(backend_, layer.in_vectors, &diag, &off);
    // Without l2 and damping a blank input direction has σ = 0 and M would be singular:
    // floor the shift relative to the largest product (then CG itself reports the trouble).
    // Gershgorin's bound on T stands in for S's largest eigenvalue.
    double sigma_max = 0;
    for (int64_t j = 0; j < k; ++j)
      sigma_max = std::max(sigma_max, std::fabs(diag[j]) + std::fabs(off[j]) +
                                          (j > 0 ? std::fabs(off[j - 1]) : 0.0));
    const double top = gamma.back() * sigma_max;
    const double shift = std::max(objective.l2() + damping,
                                  1e3 * std::numeric_limits<T>::epsilon() * std::max(top, 1e-300));
    // LDLᵀ of γ_a T + shift·I for every eigenvalue γ_a of Γ, in double on the host (O(out·k)):
    //   d_0 = γ t_0 + s,  l_j = γ e_j / d_j,  d_{j+1} = γ t_{j+1} + s − l_j γ e_j.
    // In exact arithmetic every pivot is ≥ the matrix's smallest eigenvalue ≥ s (σ ≥ 0);
    // the floor s/2 only catches rounding in T (an f32 S can show σ ≈ −1e-6·‖S‖) and keeps M
    // positive definite, which is all PCG needs of it.
    std::vector<T> pivots(static_cast<size_t>(out * k)), multipliers(pivots.size(), T(0));
    for (int64_t a = 0; a < out; ++a) {
      double d = gamma[a] * diag[0] + shift;
      for (int64_t j = 0;; ++j) {
        d = std::max(d, 0.5 * shift);
        pivots[a * k + j] = T(d);
        if (j + 1 == k) break;
        const double ge = gamma[a] * off[j], l = ge / d;
        multipliers[a * k + j] = T(l);
        d = gamma[a] * diag[j + 1] + shift - l * ge;
      }
    }
    layer.pivots = backend_.Allocate(out, k);
    layer.multipliers = backend_.Allocate(out, k);
    backend_.Upload(pivots.data(), layer.pivots);
    backend_.Upload(multipliers.data(), layer.multipliers);
    layers_.push_back(std::move(layer));
  }
  if (covered < num_params_) {
    const double shift = objective.l2() + damping;
    uncovered_scale_ = shift > 0 ? 1.0 / shift : 1.0;
  }
  setup_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

template <typename T>
bool KfacState::Fits(Objective<T>& objective, double lambda) const {
  if (num_params != objective.num_params() || damping != lambda || l2 != objective.l2()) return false;
  const std::vector<layers::KroneckerBlock> blocks = objective.KroneckerBlocks();
  if (blocks.size() != layers.size()) return false;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const layers::KroneckerBlock &a = blocks[i], &b = layers[i].block;
    const Layer& l = layers[i];
    if (a.out != b.out || a.in != b.in || a.weight_offset != b.weight_offset ||
        a.bias_offset != b.bias_offset || l.k != a.k() ||
        l.out_vectors.size() != static_cast<size_t>(a.out * a.out) ||
        l.in_vectors.size() != static_cast<size_t>(l.k * l.k) ||
        l.pivots.size() != static_cast<size_t>(a.out * l.k) ||
        l.multipliers.size() != l.pivots.size())
      return false;
  }
  return true;
}

namespace {
template <typename T>
kernels::Matrix<T> UploadHost(kernels::Backend<T>& be, const std::vector<double>& v, int64_t rows,
                              int64_t cols) {
  kernels::Matrix<T> m = be.Allocate(rows, cols);
  const std::vector<T> host(v.begin(), v.end());
  be.Upload(host.data(), m);
  return m;
}
template <typename T>
std::vector<double> DownloadHost(kernels::Backend<T>& be, const kernels::Matrix<T>& m) {
  std::vector<T> host(static_cast<size_t>(m.size()));
  be.Download(m, host.data());
  return std::vector<double>(host.begin(), host.end());
}
}  // namespace

template <typename T>
KfacPreconditioner<T>::KfacPreconditioner(Objective<T>& objective, const KfacState& state)
    : backend_(objective.backend()),
      options_(objective.options()),
      num_params_(objective.num_params()),
      uncovered_scale_(state.uncovered_scale) {
  LETHE_CHECK(state.Fits(objective, state.damping));
  const auto start = std::chrono::steady_clock::now();
  for (const KfacState::Layer& s : state.layers) {
    Layer layer;
    layer.block = s.block;
    layer.out_vectors = UploadHost(backend_, s.out_vectors, s.block.out, s.block.out);
    layer.in_vectors = UploadHost(backend_, s.in_vectors, s.k, s.k);
    layer.pivots = UploadHost(backend_, s.pivots, s.block.out, s.k);
    layer.multipliers = UploadHost(backend_, s.multipliers, s.block.out, s.k);
    layers_.push_back(std::move(layer));
  }
  setup_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

template <typename T>
KfacState KfacPreconditioner<T>::State(double damping, double l2) const {
  KfacState s;
  s.num_params = num_params_;
  s.damping = damping;
  s.l2 = l2;
  s.uncovered_scale = uncovered_scale_;
  for (const Layer& layer : layers_) {
    KfacState::Layer l;
    l.block = layer.block;
    l.k = layer.in_vectors.rows();
    l.out_vectors = DownloadHost(backend_, layer.out_vectors);
    l.in_vectors = DownloadHost(backend_, layer.in_vectors);
    l.pivots = DownloadHost(backend_, layer.pivots);
    l.multipliers = DownloadHost(backend_, layer.multipliers);
    s.layers.push_back(std::move(l));
  }
  return s;
}

template <typename T>
void KfacPreconditioner<T>::Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) {
  LETHE_CHECK(V.cols() == num_params_ && out.rows() == V.rows() && out.cols() == V.cols());
  kernels::Backend<T>& be = backend_;
  // Every row first, for the parameters outside the blocks (which then overwrite theirs).
  if (uncovered_scale_ > 0) be.Axpby(T(uncovered_scale_), V, T(0), out);
  for (Layer& layer : layers_) {
    const layers::KroneckerBlock& s = layer.block;
    const int64_t k = layer.in_vectors.rows();
    const bool bias = s.bias_offset >= 0;
    // The input-side products of a group of directions are one GEMM on their stacked
    // [W | b] blocks (group·out × k), grouped as the curvature products are.
    const int64_t group = options_.DirectionsPerGroup(V.rows(), s.out * k);
    if (layer.z.rows() < group * s.out) {
      layer.z = be.Allocate(group * s.out, k);
      layer.t = be.Allocate(group * s.out, k);
    }
    for (int64_t r0 = 0; r0 < V.rows(); r0 += group) {
      const int64_t g = std::min(group, V.rows() - r0);
      kernels::Matrix<T> z = layer.z.Rows(0, g * s.out), t = layer.t.Rows(0, g * s.out);
      for (int64_t j = 0; j < g; ++j) {  // z_j = [W | b] of direction r0 + j
        const kernels::Matrix<T> v = V.Row(r0 + j);
        kernels::Matrix<T> zj = z.Rows(j * s.out, s.out);
        be.Copy(v.Block(s.weight_offset, s.out, s.in), zj.Cols(0, s.in));
        if (bias) be.Copy(v.Block(s.bias_offset, s.out, 1), zj.Cols(s.in, 1));
      }
      be.Gemm(Op::kNone, Op::kTranspose, T(1), z, layer.in_vectors, T(0), t);  // V E_Sᵀ
      for (int64_t j = 0; j < g; ++j) {
        kernels::Matrix<T> zj = z.Rows(j * s.out, s.out), tj = t.Rows(j * s.out, s.out);
        be.Gemm(Op::kNone, Op::kNone, T(1), layer.out_vectors, tj, T(0), zj);  // W = E_Γ ·
        be.TridiagonalSolve(layer.pivots, layer.multipliers, zj);  // row a: w_a (γ_a T + s)⁻¹
        be.Gemm(Op::kTranspose, Op::kNone, T(1), layer.out_vectors, zj, T(0), tj);  // E_Γᵀ ·
      }
      be.Gemm(Op::kNone, Op::kNone, T(1), t, layer.in_vectors, T(0), z);  // · E_S
      for (int64_t j = 0; j < g; ++j) {
        kernels::Matrix<T> o = out.Row(r0 + j), zj = z.Rows(j * s.out, s.out);
        be.Copy(zj.Cols(0, s.in), o.Block(s.weight_offset, s.out, s.in));
        if (bias) be.Copy(zj.Cols(s.in, 1), o.Block(s.bias_offset, s.out, 1));
      }
    }
  }
}

template bool KfacState::Fits<float>(Objective<float>&, double) const;
template bool KfacState::Fits<double>(Objective<double>&, double) const;
template class KfacPreconditioner<float>;
template class KfacPreconditioner<double>;

}  // namespace lethe
