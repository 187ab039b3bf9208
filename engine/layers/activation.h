// Elementwise activations y = σ(x) (relu, tanh, sigmoid, gelu, softplus, identity; the
// formulas for σ, σ', σ'' are in kernels/scalar_math.h, shared by every backend). No
// parameters. For a batch x, δ = ∂ℓ/∂y (all count × width, ⊙ elementwise):
//
//   forward      y        = σ(x)
//   backward     δ_in     = δ ⊙ σ'(x)
//   R forward    R{y}     = σ'(x) ⊙ R{x}
//   R backward   R{δ_in}  = R{δ} ⊙ σ'(x) + δ ⊙ σ''(x) ⊙ R{x}
//   Gauss-Newton R{δ_in}  = R{δ} ⊙ σ'(x)   (the σ'' term differentiates the Jacobian)
//
// Linearize keeps σ'(x) (and σ''(x) for the Hessian) per batch, so that many directions
// reuse them (and the objective's forward-pass cache keeps them across products).
#pragma once

#include "engine/layers/layer.h"

namespace lethe::layers {

template <typename T>
std::unique_ptr<Layer<T>> MakeActivation(const io::LayerSpec& spec, const LayerShape& shape);

}  // namespace lethe::layers
