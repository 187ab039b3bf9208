// The comparison table of unlearning results: original, patched, retrained (docs/unlearning.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/audit.h"

namespace lethe::cli {

struct ModelRow {
  std::string name;
  std::vector<double> theta;
  ModelAudit audit;
  double seconds = -1;  // time to produce it; < 0: not applicable
};

// Prints the table; `reference` (index into rows) is the model distances are taken to,
// `original` the one they are relative to (‖θ − θ_ref‖ / ‖θ_orig − θ_ref‖); -1 for none.
void PrintComparison(const std::vector<ModelRow>& rows, int reference, int original);
nlohmann::json ComparisonJson(const std::vector<ModelRow>& rows, int reference, int original);

}  // namespace lethe::cli
