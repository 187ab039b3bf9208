// layernorm: nn.LayerNorm over each example's whole feature vector: nn.LayerNorm(d) on
// [n, d], nn.LayerNorm([C, H, W]) on images (every value of the example is one of its d
// features; the shape passes through). Keys: "weight" γ and "bias" β (tensors of the input's
// shape, each optional: γ = 1, β = 0 without them), "eps" ε (default 1e-5), "frozen". The
// variance is the biased one, as PyTorch's. ⟨·⟩ is the mean over a row's d features, ⊙
// elementwise, per row x (docs/maths.md derives these; tests/python/test_norm_maths.py checks
// them against PyTorch's double backward):
//
//   forward      μ = ⟨x⟩, σ² = ⟨(x − μ)²⟩, s = (σ² + ε)^(−1/2), x̂ = s (x − μ), y = γ ⊙ x̂ + β
//   Jacobian     ∂x̂/∂x = s M,  M = I − 11ᵀ/d − x̂ x̂ᵀ/d  (symmetric)
//   backward     g = γ ⊙ δ,  δ_in = s M g = s (g − ⟨g⟩ − x̂ ⟨g ⊙ x̂⟩),
//                ∇γ = Σᵢ δ ⊙ x̂,  ∇β = Σᵢ δ
//   per example  ∇γ lᵢ = δᵢ ⊙ x̂ᵢ, ∇β lᵢ = δᵢ;  dots: (δ ⊙ x̂) S_γᵀ + δ S_βᵀ (two GEMMs, all
//                directions at once)
//   R forward    R{x̂} = s M R{x} = s (R{x} − ⟨R{x}⟩ − x̂ ρ),  ρ = ⟨x̂ ⊙ R{x}⟩  (R{s} = −s² ρ)
//                R{y} = γ ⊙ R{x̂} + v_γ ⊙ x̂ + v_β
//   R backward   R{δ_in} = s M (γ ⊙ R{δ} + v_γ ⊙ δ) − s ρ δ_in − s ⟨g ⊙ x̂⟩ R{x̂}
//                          − s x̂ ⟨g ⊙ R{x̂}⟩
//                R{∇γ} = Σᵢ R{δ} ⊙ x̂ + δ ⊙ R{x̂},  R{∇β} = Σᵢ R{δ}
//   Gauss-Newton R{δ_in} = s M (γ ⊙ R{δ}),  R{∇γ} = Σᵢ R{δ} ⊙ x̂,  R{∇β} = Σᵢ R{δ}
//
// The Hessian terms: R{s M} g = R{s} M g + s R{M} g with R{M} = −(R{x̂} x̂ᵀ + x̂ R{x̂}ᵀ)/d (the
// second derivatives of x̂ in x: the last three terms of R{δ_in}), and the γ–x cross block
// (s M (v_γ ⊙ δ) in R{δ_in}, δ ⊙ R{x̂} in R{∇γ}). y is linear in γ and β: no other terms.
// A frozen γ, β are constants (v_γ = v_β = 0, no gradient). No K-FAC block (the
// preconditioner leaves γ and β to the damping).
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kLayerNormType;

}  // namespace lethe::layers
