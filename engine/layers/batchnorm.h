// batchnorm: BatchNorm in evaluation mode (the model as it predicts): nn.BatchNorm1d(C) on
// [n, C] (per feature) or nn.BatchNorm2d(C) on [n, C, H, W] (per channel: the same factor at
// all P = H·W positions of a channel). Keys: "running_mean" m and "running_var" v (fixed
// tensors [C], default "<index>.running_mean" / "<index>.running_var": not parameters, so
// not in θ, not trained, not in l2, not patched), "weight" γ and "bias" β ([C] each,
// optional: γ = 1, β = 0 without them), "eps" ε (default 1e-5), "frozen". With
// s = (v + ε)^(−1/2), factors per channel broadcast over positions, and Σ over the batch's
// examples and a channel's positions:
//
//   forward      x̂ = (x − m) ⊙ s,  y = γ ⊙ x̂ + β
//   backward     δ_in = δ ⊙ γ ⊙ s,  ∇γ = Σ δ ⊙ x̂,  ∇β = Σ δ
//   per example  ∇γ lᵢ = Σ_positions δᵢ ⊙ x̂ᵢ, ∇β lᵢ = Σ_positions δᵢ (count × C each);
//                dots: those count × C matrices times S_γᵀ, S_βᵀ (two GEMMs)
//   R forward    R{y} = γ ⊙ s ⊙ R{x} + v_γ ⊙ x̂ + v_β
//   R backward   R{δ_in} = R{δ} ⊙ γ ⊙ s + δ ⊙ v_γ ⊙ s,
//                R{∇γ} = Σ R{δ} ⊙ x̂ + δ ⊙ s ⊙ R{x},  R{∇β} = Σ R{δ}
//   Gauss-Newton without δ ⊙ v_γ ⊙ s and δ ⊙ s ⊙ R{x}
//
// y is bilinear in (x, γ): the cross block ∂²y/∂x∂γ is its only second-order term (the two
// Hessian terms above are its two halves). Without a trainable weight the layer is affine
// in x and has no second-order terms. A network trained with BatchNorm in training mode
// (batch statistics) is analysed as this evaluation-mode function (docs/maths.md). No
// K-FAC block (the preconditioner leaves γ and β to the damping).
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kBatchNormType;

}  // namespace lethe::layers
