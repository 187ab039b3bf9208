// conv2d: exactly torch.nn.Conv2d with groups 1 and zero padding. Keys: "weight" (tensor
// [out, in, kh, kw], default "<index>.weight"), "bias" (tensor [out], optional), "out"
// (optional when the file's weight gives it), "kernel" (int or [kh, kw]), "stride" (default
// 1), "padding" (default 0), "dilation" (default 1), each an int or a pair [h, w];
// "frozen". Input [C, H, W] (or [H, W], C = 1), output [out, OH, OW] with
// OH = ⌊(H + 2·pad_h − dil_h·(kh − 1) − 1) / stride_h⌋ + 1 (and OW alike).
//
// Maths. For one example, P = OH·OW positions t, its patch matrix X̃ = Im2Col(x) (P × K,
// K = C·kh·kw, row t the input under window t, zeros in the padding) and W (out × K, the
// weight row-major), the layer is linear's on the patches, one "example" per position:
//
//   forward      Z = X̃ Wᵀ + 1 bᵀ   (P × out, channels-last),   y = Zᵀ as [out, OH, OW]
//   backward     with D the channels-last δ (P × out, row t = δ_t = ∂ℓ/∂Z_t):
//                ∇W += Dᵀ X̃,   ∇b += 1ᵀ D,   δ_in = Col2Im(D W)   (Col2Im = Im2Colᵀ)
//   per example  ∇W lᵢ = Dᵢᵀ X̃ᵢ = Σ_t δ_{i,t} x̃_{i,t}ᵀ,   ∇b lᵢ = Σ_t δ_{i,t}
//   dots         ⟨S_W, ∇W lᵢ⟩ + ⟨s_b, ∇b lᵢ⟩ = Σ_t δ_{i,t}ᵀ (S_W x̃_{i,t} + s_b)
//                = rowᵢ of the row dots of D and X̃ S_Wᵀ + 1 s_bᵀ, each example's P × out
//                block read as one row: O(count·P·out) memory, never count × p
//   R forward    R{Z} = R{X̃} Wᵀ + X̃ V_Wᵀ + 1 v_bᵀ   (R{X̃} = Im2Col(R{x}): Im2Col is linear)
//   R backward   R{∇W} = R{D}ᵀ X̃ + Dᵀ R{X̃},   R{∇b} = 1ᵀ R{D},
//                R{δ_in} = Col2Im(R{D} W + D V_W)
//   Gauss-Newton the same without Dᵀ R{X̃} and D V_W: the layer is bilinear in (x, W), so
//                its only second derivatives are the cross terms ∂²y/∂x∂W, as linear's
//   grouped      as the first layer with parameters: R{Z}_j = X̃ V_W,jᵀ + 1 v_b,jᵀ for g
//                directions as one GEMM X̃ [V_W,1; …; V_W,g]ᵀ, R{∇W}_j as one GEMM back
//   K-FAC        KFC (Grosse & Martens 2016), with ã_t = [x̃_t; 1] (the bias as a constant
//                input) and J_t the Jacobian of the output with respect to Z_t:
//                  S += Σᵢ Σ_t ã_{i,t} ã_{i,t}ᵀ                       (K+1 × K+1)
//                  Γ += (1/P) Σᵢ Σ_t (Jᵀe)_{i,t} (JᵀAe)_{i,t}ᵀ        (out × out)
//                so that, after the driver's 1/n, Γ ⊗ S = E[(1/P) Σ_t δδᵀ] ⊗ E[Σ_t ããᵀ],
//                the paper's Ω ⊗ Γ scaling: the exact block E[Σ_{t,t'} δ_t δ_t'ᵀ ⊗
//                ã_t ã_t'ᵀ] under spatially uncorrelated derivatives (the t ≠ t' terms
//                dropped) and spatial homogeneity (δ's and ã's statistics independent of
//                t and of each other). With one position (P = 1) it is linear's, exact
//                for one example. The block is [W | b] (out × K + 1), W row-major as
//                [out, C·kh·kw]: the preconditioner needs nothing conv-specific.
//
// Patches are recomputed from x (Im2Col, memory-bound) in each pass that needs them rather
// than kept: the driver may interleave batches, and count·P·K values per batch would
// double the layer's memory for a copy that costs less than its GEMM.
// Forward, backward, the R passes and the grouped products go through the backend's
// convolution products (Backend::ConvForward, ConvWeightGradient, ConvInputGradient), which
// take and give δ and y channels-first as they are: on the CPU fused, a block of examples'
// patches at a time in cache, one GEMM per block (kernels/cpu/cpu_conv_ops.cc); elsewhere composed from Im2Col, one GEMM and
// TransposeRows through cols_ and d_ (kernels/conv_ops.cc). The per-example products and
// K-FAC's factors use the patch matrix and the channels-last δ directly, as written above.
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kConv2dType;

}  // namespace lethe::layers
