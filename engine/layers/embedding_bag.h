// embedding_bag: y_i = w_i Σ_{l∈S_i} W[x_il, :], exactly torch.nn.EmbeddingBag(mode,
// padding_idx) on a 2-D input: the example x_i is a row of L token ids (X of an integer
// dtype, [n, L]), S_i = {l : x_il ≠ padding_idx}, w_i = 1 ("sum") or 1/|S_i| ("mean", the
// default; an all-padding row gives y_i = 0). W is [num_embeddings, dim] in θ.
//
// Keys: "weight" (default "<index>.weight"), "num_embeddings" and "dim" (optional when the
// model file's weight gives them), "mode" ("mean" | "sum"), "padding_idx" (optional, in
// [0, num_embeddings)), "frozen". Input [L], output [dim]. It must be the model's first
// layer: it reads ids from the data, and nothing below it could be differentiated (ids
// are not). Ids are checked once where the data meet the model (CheckData: an id outside
// [0, num_embeddings) is an error naming the row) and again by the kernels (LETHE_CHECK).
// The kernels take ids as exact values of T: f32 is exact below 2²⁴, so num_embeddings is
// at most 2²⁴.
//
// The layer is linear in W, and ids have no derivative, so with a batch of ids x,
// δ = ∂ℓ/∂y (count × dim) and a direction v = V_W (num × dim):
//
//   forward      y        = B(x) W,   B(x)_i = w_i Σ_{l∈S_i} e_{x_il}ᵀ  (Backend::EmbeddingBag)
//   backward     ∇W      += B(x)ᵀ δ    (a scatter-add of rows: EmbeddingBagAdjoint)
//   per example  ∇W lᵢ    = B(x)_iᵀ δᵢ  (EmbeddingBagPerExample: row i, num·dim values)
//   dots         ⟨S_W, B(x)_iᵀ δᵢ⟩ = ⟨δᵢ, (B(x) S_W)_i⟩: one more forward per direction
//                (O(count × dim) memory, never count × p)
//   R forward    R{y}     = B(x) V_W
//   R backward   R{∇W}    = B(x)ᵀ R{δ}; no term in δ (∂²y/∂W² = 0, and x is not varied),
//                so the Hessian and the Gauss-Newton products agree here
//   δ_in, R{δ_in}: none (the input is data)
//   K-FAC        no block (the preconditioner leaves W to the damping)
#pragma once

#include "engine/layers/layer.h"
#include "engine/layers/plan.h"

namespace lethe::layers {

extern const LayerType kEmbeddingBagType;

}  // namespace lethe::layers
