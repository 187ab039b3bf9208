// Scalar formulas for activations and losses, written once for the CPU backend and
// (with __host__ __device__) the CUDA kernels, so both devices compute the same maths.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/ops.h"

#ifdef __CUDACC__
#define LETHE_HD __host__ __device__
#else
#define LETHE_HD
#endif

namespace lethe::kernels {

// eˣ in T's own precision on either device (an unqualified exp of a float is the double
// one on the host).
LETHE_HD inline float Exp(float x) { return expf(x); }
LETHE_HD inline double Exp(double x) { return exp(x); }

// log(1 + eᶻ) without overflow: max(z, 0) + log1p(e^−|z|).
template <typename T>
LETHE_HD inline T Softplus(T z) {
  return (z > T(0) ? z : T(0)) + log1p(exp(-fabs(z)));
}

// 1 / (1 + e^−z), evaluated on the side that does not overflow.
template <typename T>
LETHE_HD inline T Sigmoid(T z) {
  if (z >= T(0)) return T(1) / (T(1) + exp(-z));
  T e = exp(z);
  return e / (T(1) + e);
}

// σ⁽ᵏ⁾(z) for k = order ∈ {0, 1, 2}.
//   tanh:     t, 1 − t², −2t(1 − t²)
//   sigmoid:  s, s(1 − s), s(1 − s)(1 − 2s)
//   softplus: softplus(z), s, s(1 − s)             (s = sigmoid(z))
//   gelu:     zΦ(z), Φ(z) + zφ(z), φ(z)(2 − z²)    (Φ, φ: standard normal cdf, pdf)
//   relu:     max(z, 0), 1[z > 0], 0               (derivative 0 at z = 0, as PyTorch)
template <typename T>
LETHE_HD inline T ActivationValue(Activation act, int order, T z) {
  switch (act) {
    case Activation::kIdentity:
      return order == 0 ? z : (order == 1 ? T(1) : T(0));
    case Activation::kRelu:
      if (order == 0) return z > T(0) ? z : T(0);
      return order == 1 ? (z > T(0) ? T(1) : T(0)) : T(0);
    case Activation::kTanh: {
      T t = tanh(z);
      if (order == 0) return t;
      return order == 1 ? T(1) - t * t : T(-2) * t * (T(1) - t * t);
    }
    case Activation::kSigmoid: {
      T s = Sigmoid(z);
      if (order == 0) return s;
      return order == 1 ? s * (T(1) - s) : s * (T(1) - s) * (T(1) - T(2) * s);
    }
    case Activation::kSoftplus: {
      if (order == 0) return Softplus(z);
      T s = Sigmoid(z);
      return order == 1 ? s : s * (T(1) - s);
    }
    case Activation::kGelu: {
      const T inv_sqrt2 = T(0.70710678118654752440);
      const T inv_sqrt2pi = T(0.39894228040143267794);
      T cdf = T(0.5) * erfc(-z * inv_sqrt2);
      T pdf = inv_sqrt2pi * exp(T(-0.5) * z * z);
      if (order == 0) return z * cdf;
      return order == 1 ? cdf + z * pdf : pdf * (T(2) - z * z);
    }
  }
  return T(0);
}

}  // namespace lethe::kernels

namespace lethe::kernels {

// One example's loss l(f, y); f has `width` outputs, y its target row.
//   cross_entropy: logsumexp(f) − f[y]   (shifted by max f, so it never overflows)
//   logistic:      softplus(f) − y·f
//   mse:           ½ Σ_j (f_j − y_j)²
template <typename T>
LETHE_HD inline T LossValueRow(LossKind loss, const T* f, long width, const T* y) {
  switch (loss) {
    case LossKind::kCrossEntropy: {
      T m = f[0];
      for (long j = 1; j < width; ++j) m = f[j] > m ? f[j] : m;
      T s = T(0);
      for (long j = 0; j < width; ++j) s += exp(f[j] - m);
      return m + log(s) - f[static_cast<long>(y[0])];
    }
    case LossKind::kLogistic:
      return Softplus(f[0]) - y[0] * f[0];
    case LossKind::kMse: {
      T s = T(0);
      for (long j = 0; j < width; ++j) s += (f[j] - y[j]) * (f[j] - y[j]);
      return T(0.5) * s;
    }
  }
  return T(0);
}

// g = scale · ∂l/∂f:  cross_entropy: softmax(f) − e_y;  logistic: sigmoid(f) − y;  mse: f − y.
template <typename T>
LETHE_HD inline void LossGradientRow(LossKind loss, T scale, const T* f, long width, const T* y,
                                     T* g) {
  switch (loss) {
    case LossKind::kCrossEntropy: {
      T m = f[0];
      for (long j = 1; j < width; ++j) m = f[j] > m ? f[j] : m;
      T s = T(0);
      for (long j = 0; j < width; ++j) s += exp(f[j] - m);
      T lse = m + log(s);
      long label = static_cast<long>(y[0]);
      for (long j = 0; j < width; ++j) g[j] = scale * (exp(f[j] - lse) - (j == label ? T(1) : T(0)));
      return;
    }
    case LossKind::kLogistic:
      g[0] = scale * (Sigmoid(f[0]) - y[0]);
      return;
    case LossKind::kMse:
      for (long j = 0; j < width; ++j) g[j] = scale * (f[j] - y[j]);
      return;
  }
}

// out = scale · ∇²_f l · v:  cross_entropy: p ⊙ v − p (pᵀv) with p = softmax(f);
// logistic: s(1 − s) v;  mse: v.
template <typename T>
LETHE_HD inline void LossHessianRow(LossKind loss, T scale, const T* f, long width, const T* v,
                                    T* out) {
  switch (loss) {
    case LossKind::kCrossEntropy: {
      // p = softmax(f) = e^{f−m} / Σ e^{f−m}, one exponential per class, kept in `out` (which
      // is neither f nor v): curvature products call this n times per pass, and three
      // exponentials per class (p recomputed in each loop) were most of their elementwise time.
      T m = f[0];
      for (long j = 1; j < width; ++j) m = f[j] > m ? f[j] : m;
      T s = T(0);
      for (long j = 0; j < width; ++j) {
        out[j] = Exp(f[j] - m);
        s += out[j];
      }
      T pv = T(0);
      for (long j = 0; j < width; ++j) {
        out[j] /= s;
        pv += out[j] * v[j];
      }
      for (long j = 0; j < width; ++j) out[j] = scale * out[j] * (v[j] - pv);
      return;
    }
    case LossKind::kLogistic: {
      T s = Sigmoid(f[0]);
      out[0] = scale * s * (T(1) - s) * v[0];
      return;
    }
    case LossKind::kMse:
      for (long j = 0; j < width; ++j) out[j] = scale * v[j];
      return;
  }
}

// 1 if the example is classified right: argmax f = y (first maximum wins, as torch.argmax),
// logistic f > 0 ⇔ y = 1. mse has no accuracy and returns 0.
template <typename T>
LETHE_HD inline T CorrectRow(LossKind loss, const T* f, long width, const T* y) {
  switch (loss) {
    case LossKind::kCrossEntropy: {
      long best = 0;
      for (long j = 1; j < width; ++j)
        if (f[j] > f[best]) best = j;
      return best == static_cast<long>(y[0]) ? T(1) : T(0);
    }
    case LossKind::kLogistic:
      return (f[0] > T(0)) == (y[0] > T(0.5)) ? T(1) : T(0);
    case LossKind::kMse:
      return T(0);
  }
  return T(0);
}

// x ← (L D Lᵀ)⁻¹ x for one row (n ≥ 1): D = diag(d), L unit lower bidiagonal with
// L_{j+1,j} = l[j]. Forward L y = x, then D Lᵀ x = y (Backend::TridiagonalSolve).
template <typename T>
LETHE_HD inline void TridiagonalSolveRow(const T* d, const T* l, T* x, int64_t n) {
  for (int64_t j = 1; j < n; ++j) x[j] -= l[j - 1] * x[j - 1];
  x[n - 1] /= d[n - 1];
  for (int64_t j = n - 2; j >= 0; --j) x[j] = x[j] / d[j] - l[j] * x[j + 1];
}

}  // namespace lethe::kernels
