#include "engine/kfac_preconditioner.h"

#include <algorithm>
#include <chrono>
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
}  // namespace

void KfacOptions::Validate() const {
  if (max_examples < 1) Fail("--kfac-examples = ", max_examples, ": must be >= 1");
  if (cholesky_max_out < 0)
    Fail("KfacOptions::cholesky_max_out = ", cholesky_max_out, ": must be >= 0");
}

template <typename T>
KfacPreconditioner<T>::KfacPreconditioner(Objective<T>& objective, const kernels::Matrix<T>& theta,
                                          double damping, const KfacOptions& options)
    : backend_(objective.backend()),
      options_(objective.options()),
      num_params_(objective.num_params()) {
  options.Validate();
  const auto start = std::chrono::steady_clock::now();
  kernels::Backend<T>& be = backend_;
  std::vector<kernels::Matrix<T>> gammas, inputs;
  objective.KroneckerFactors(theta, &gammas, &inputs, options.max_examples);
  size_t j = 0;
  for (const LayerShape& shape : objective.arch().layers) {
    if (!shape.is_linear()) continue;
    Layer layer;
    layer.shape = shape;
    layer.out_vectors = gammas[j];
    layer.in_vectors = inputs[j];
    ++j;
    const int64_t out = shape.out, k = layer.in_vectors.rows();
    layer.k = k;
    const std::vector<double> gamma = Eigendecompose(be, layer.out_vectors);
    // Without l2 and damping a blank input direction has σ = 0 and M would be singular:
    // floor the shift relative to the largest product (then CG itself reports the trouble).
    // σ_max ≤ trace(S) bounds it without S's eigenvalues.
    auto shift_for = [&](double sigma_max) {
      const double top = gamma.back() * sigma_max;
      return std::max(objective.l2() + damping,
                      1e3 * std::numeric_limits<T>::epsilon() * std::max(top, 1e-300));
    };
    if (out <= options.cholesky_max_out) {
      std::vector<T> host(static_cast<size_t>(k * k));
      be.Download(layer.in_vectors, host.data());
      double trace = 0;
      for (int64_t i = 0; i < k; ++i) trace += host[i * k + i];
      const double shift = shift_for(trace);
      std::fill(host.begin(), host.end(), T(0));
      for (int64_t i = 0; i < k; ++i) host[i * k + i] = T(shift);
      kernels::Matrix<T> shift_identity = be.Allocate(k, k);
      be.Upload(host.data(), shift_identity);
      bool ok = true;
      for (int64_t a = 0; a < out && ok; ++a) {
        kernels::Matrix<T> f = be.Allocate(k, k);  // γ_a S + shift I
        be.Copy(shift_identity, f);
        be.Axpby(T(gamma[a]), layer.in_vectors, T(1), f);
        ok = be.CholeskyFactor(f);
        layer.factors.push_back(f);
      }
      if (ok) {
        layers_.push_back(std::move(layer));
        continue;
      }
      layer.factors.clear();  // not positive definite in rounding: the eigen form below
    }
    const std::vector<double> sigma = Eigendecompose(be, layer.in_vectors);
    const double shift = shift_for(sigma.back());
    std::vector<T> inverse(static_cast<size_t>(out * k));
    for (int64_t a = 0; a < out; ++a)
      for (int64_t b = 0; b < k; ++b) inverse[a * k + b] = T(1.0 / (gamma[a] * sigma[b] + shift));
    layer.inverse_eigenvalues = be.Allocate(out, k);
    be.Upload(inverse.data(), layer.inverse_eigenvalues);
    layers_.push_back(std::move(layer));
  }
  setup_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

template <typename T>
void KfacPreconditioner<T>::Apply(const kernels::Matrix<T>& V, kernels::Matrix<T> out) {
  LETHE_CHECK(V.cols() == num_params_ && out.rows() == V.rows() && out.cols() == V.cols());
  kernels::Backend<T>& be = backend_;
  for (Layer& layer : layers_) {
    const LayerShape& s = layer.shape;
    const int64_t k = layer.k;
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
      // The result lands in t.
      if (layer.factors.empty())
        ApplyEigen(layer, z, t, g);
      else
        ApplyCholesky(layer, z, t, g);
      for (int64_t j = 0; j < g; ++j) {
        kernels::Matrix<T> o = out.Row(r0 + j), tj = t.Rows(j * s.out, s.out);
        be.Copy(tj.Cols(0, s.in), o.Block(s.weight_offset, s.out, s.in));
        if (bias) be.Copy(tj.Cols(s.in, 1), o.Block(s.bias_offset, s.out, 1));
      }
    }
  }
}

// t = E_Γᵀ [ (E_Γ z E_Sᵀ) ⊘ (γσᵀ + shift) ] E_S for each direction's block of z.
template <typename T>
void KfacPreconditioner<T>::ApplyEigen(Layer& layer, kernels::Matrix<T> z, kernels::Matrix<T> t,
                                       int64_t g) {
  kernels::Backend<T>& be = backend_;
  const int64_t out = layer.shape.out;
  be.Gemm(Op::kNone, Op::kTranspose, T(1), z, layer.in_vectors, T(0), t);  // V E_Sᵀ
  for (int64_t j = 0; j < g; ++j) {
    kernels::Matrix<T> zj = z.Rows(j * out, out), tj = t.Rows(j * out, out);
    be.Gemm(Op::kNone, Op::kNone, T(1), layer.out_vectors, tj, T(0), zj);       // E_Γ ·
    be.Multiply(zj, layer.inverse_eigenvalues, T(0), tj);                       // ⊘ (γσᵀ + s)
    be.Gemm(Op::kTranspose, Op::kNone, T(1), layer.out_vectors, tj, T(0), zj);  // E_Γᵀ ·
  }
  be.Gemm(Op::kNone, Op::kNone, T(1), z, layer.in_vectors, T(0), t);  // · E_S
}

// t = E_Γᵀ u, row a of u = (γ_a S + shift I)⁻¹ (row a of E_Γ z), for each direction's block.
// The rows that share a factor are gathered into one contiguous block (a-major in t), so
// each factor solves all g directions at once.
template <typename T>
void KfacPreconditioner<T>::ApplyCholesky(Layer& layer, kernels::Matrix<T> z, kernels::Matrix<T> t,
                                          int64_t g) {
  kernels::Backend<T>& be = backend_;
  const int64_t out = layer.shape.out;
  for (int64_t j = 0; j < g; ++j) {
    kernels::Matrix<T> zj = z.Rows(j * out, out), tj = t.Rows(j * out, out);
    be.Gemm(Op::kNone, Op::kNone, T(1), layer.out_vectors, zj, T(0), tj);  // E_Γ ·
  }
  if (g == 1) {
    for (int64_t a = 0; a < out; ++a) be.CholeskySolve(layer.factors[a], t.Row(a));
  } else {
    for (int64_t j = 0; j < g; ++j)  // direction-major t → factor-major z
      for (int64_t a = 0; a < out; ++a) be.Copy(t.Row(j * out + a), z.Row(a * g + j));
    for (int64_t a = 0; a < out; ++a) be.CholeskySolve(layer.factors[a], z.Rows(a * g, g));
    for (int64_t j = 0; j < g; ++j)
      for (int64_t a = 0; a < out; ++a) be.Copy(z.Row(a * g + j), t.Row(j * out + a));
  }
  for (int64_t j = 0; j < g; ++j) {
    kernels::Matrix<T> zj = z.Rows(j * out, out), tj = t.Rows(j * out, out);
    be.Gemm(Op::kTranspose, Op::kNone, T(1), layer.out_vectors, tj, T(0), zj);  // E_Γᵀ ·
    be.Copy(zj, tj);
  }
}

template class KfacPreconditioner<float>;
template class KfacPreconditioner<double>;

}  // namespace lethe
