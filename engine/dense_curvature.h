// The curvature of a linear model written out as a dense p × p matrix, from a few large
// weighted Gram products instead of p curvature-vector products.
//
// For a model whose only layer is linear, f = W x + b (softmax, logistic and linear
// regression), θ enters the loss only through f, so with x̃ = [x; 1] (bias) or x, and
// Aᵢ = ∇²_f lᵢ (C × C, C outputs):
//
//   H = G = (1/n) Σᵢ Aᵢ ⊗ x̃ᵢ x̃ᵢᵀ + l2 · I
//
// (Hessian and Gauss-Newton coincide: nothing differentiates the Jacobian). In θ's order
// (W [C, d] row-major, then b [C]) the block of rows of W_c and columns of W_e is
//   (1/n) Xᵀ diag(A_{·,ce}) X                         (d × d, Backend::WeightedGram)
// with A_{·,ce} the n-vector of the Aᵢ's (c, e) entries; the W_c-rows, b_e-column is
// (1/n) Xᵀ A_{·,ce} and the (b_c, b_e) entry (1/n) Σᵢ A_{i,ce}. Aᵢ is symmetric, so block
// (e, c) is block (c, e) (each block is itself symmetric): C(C+1)/2 Gram matrices, n·d²
// flops each, where p curvature products would cost about 3 · 2·n·d·C each, p = C·(d + 1):
// for 10,000 × 784 softmax, 55 × 6.2 GFLOP = 0.34 TFLOP against ~3.7 TFLOP. For cross-entropy
// each Aᵢ row sums to zero, so the last block row is minus the sum of the others: 45 Grams.
#pragma once

#include "engine/objective.h"

namespace lethe {

// Writes C + shift · I (C the Hessian or Gauss-Newton matrix of `objective` at θ) into out
// (p × p, both triangles) and returns true when the model is a single linear layer; returns
// false without touching out otherwise (the caller then forms C from curvature products).
// Backend memory besides out: n × C² values (the entries of every Aᵢ) and the backend's
// WeightedGram scratch (n × d).
template <typename T>
bool DenseCurvature(Objective<T>& objective, Curvature curvature, const kernels::Matrix<T>& theta,
                    double shift, kernels::Matrix<T> out);

// Whether DenseCurvature can form this architecture's curvature.
bool HasDenseCurvature(const Architecture& arch);

}  // namespace lethe
