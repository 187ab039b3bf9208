// linear: y = x Wᵀ + 1 bᵀ, W (out × in) row-major in θ, then b (out) when the spec names a
// bias. For a batch x (count × in), δ = ∂ℓ/∂y (count × out), a direction v = (V_W, v_b):
//
//   forward      y        = x Wᵀ + 1 bᵀ
//   backward     ∇W      += δᵀ x,          ∇b += 1ᵀ δ,         δ_in = δ W
//   per example  ∇W lᵢ    = δᵢ xᵢᵀ (Backend::RowOuter),     ∇b lᵢ = δᵢ
//   dots         ⟨S_W, δᵢ xᵢᵀ⟩ = δᵢᵀ S_W xᵢ = rowᵢ(δ ⊙ (x S_Wᵀ)),  ⟨s_b, δᵢ⟩ = (δ s_bᵀ)ᵢ
//                (O(count × out) memory, never count × p)
//   R forward    R{y}     = R{x} Wᵀ + x V_Wᵀ + 1 v_bᵀ
//   R backward   R{∇W}    = R{δ}ᵀ x + δᵀ R{x},   R{∇b} = 1ᵀ R{δ},
//                R{δ_in}  = R{δ} W + δ V_W
//   Gauss-Newton the same without δᵀ R{x} and δ V_W (the layer is linear in w and in x,
//                so those are its only second-order terms: ∂²y/∂w∂x)
//   K-FAC        ã = [x, 1] (the bias as a constant input), S += Σᵢ ãᵢ ãᵢᵀ,
//                Γ += Σᵢ (Jᵀe)ᵢ (JᵀAe)ᵢᵀ: the layer's Gauss-Newton block is
//                (1/n) Σᵢ (Jᵢᵀ Aᵢ Jᵢ) ⊗ ãᵢ ãᵢᵀ ≈ Γ ⊗ S (docs/maths.md).
//   grouped      as the first layer with parameters (x the data): R{y}_j = x V_W,jᵀ + 1 v_b,jᵀ
//                for g directions as one GEMM x [V_W,1; …; V_W,g]ᵀ, and R{∇W}_j as one
//                GEMM [R{δ}_1 … R{δ}_g]ᵀ x.
#pragma once

#include "engine/layers/layer.h"

namespace lethe::layers {

template <typename T>
std::unique_ptr<Layer<T>> MakeLinear(const io::LayerSpec& spec, const LayerShape& shape);

}  // namespace lethe::layers
