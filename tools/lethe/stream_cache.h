// What a stream of deletion requests reuses from one request to the next (`lethe unlearn
// --cache`, docs/unlearning.md): the K-FAC preconditioner of CG (engine/kfac_preconditioner.h),
// saved next to the patched model as MODEL.lethe-cache (a safetensors file: the factors as
// tensors, the keys as metadata).
//
// Why it is still valid at the next request: a preconditioner changes how many iterations CG
// needs, never the answer (CG stops on the true residual ‖(H + λI)d − g‖ ≤ η‖g‖). K-FAC's
// input factor S = E[x̃x̃ᵀ] does not depend on θ at all; its output factor Γ = E[∇²ₐℓ]
// moves by O(1/n) per single-example removal. What is keyed, and checked, is that the
// cache belongs to THIS model and THIS data: it records the SHA-256 of the model file it was
// written for (the child of the request that wrote it) and of the training data file, and a
// cache whose hashes differ from the request's is ignored (never trusted), with a note. The
// state is rebuilt from the data after `max_age` requests, so that it never drifts far.
#pragma once

#include <optional>
#include <string>

#include "engine/kfac_preconditioner.h"

namespace lethe::cli {

struct StreamCache {
  KfacState kfac;
  std::string origin_sha256;  // the model at whose θ the state was computed
  int64_t age = 0;            // requests served since then (0: computed by the last one)
};

// MODEL.lethe-cache
std::string StreamCachePath(const std::string& model_path);

// The cache next to `model_path` when it exists, is readable, was written for a model with
// hash `model_sha256` and data with hash `data_sha256`, and is younger than `max_age`;
// otherwise nullopt, and *note says why it was not used (empty when there is none).
std::optional<StreamCache> LoadStreamCache(const std::string& model_path,
                                           const std::string& model_sha256,
                                           const std::string& data_sha256, int64_t max_age,
                                           std::string* note);

// Writes `cache` next to `model_path` (atomically), keyed by `model_sha256` (that file's
// hash) and `data_sha256`.
void SaveStreamCache(const std::string& model_path, const std::string& model_sha256,
                     const std::string& data_sha256, const StreamCache& cache);

}  // namespace lethe::cli
