// The parts of the erasure record (docs/unlearning.md, "The erasure record") that every way
// of serving a request writes alike: `lethe unlearn`, `lethe unlearn --requests` and
// Python's lethe.unlearn build them here, so that their records cannot drift apart.
#pragma once

#include <nlohmann/json.hpp>

#include "engine/architecture.h"
#include "engine/unlearn.h"

namespace lethe::cli {

// method and its settings (newton: solver, curvature, damping, solve_dtype; gradient
// ascent: learning_rate, kept_weight, approximate), steps_requested, every step with its
// solve, the kept objective's gradient norm before and after, and ‖Δθ‖.
void AddPatchFields(const UnlearnOptions& options, const UnlearnSummary& s, nlohmann::json& record);

// fixed_tensors and a note, when the model has frozen tensors: the patch leaves them as they
// were, so whatever they learned from the forget set stays in the model.
void AddFixedTensors(const Architecture& arch, nlohmann::json& record);

}  // namespace lethe::cli
