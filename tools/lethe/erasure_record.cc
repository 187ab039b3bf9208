#include "tools/lethe/erasure_record.h"

#include <string>
#include <vector>

#include "tools/lethe/session.h"

namespace lethe::cli {

void AddPatchFields(const UnlearnOptions& options, const UnlearnSummary& s, nlohmann::json& record) {
  record["method"] = s.method;
  if (options.method == UnlearnMethod::kNewton) {
    record["solver"] = Name(options.inverse.solver);
    record["curvature"] =
        options.inverse.curvature == Curvature::kHessian ? "hessian" : "gauss-newton";
    record["damping"] = options.inverse.damping;
    record["solve_dtype"] = Name(options.solve_precision);
  } else {
    record["learning_rate"] = options.learning_rate;
    record["kept_weight"] = options.kept_weight;
    record["approximate"] = true;
  }
  // --steps auto: "auto" (steps until ‖∇L₋ₛ‖ <= 1e-5, at most options.steps).
  record["steps_requested"] =
      options.until_stationary ? nlohmann::json("auto") : nlohmann::json(options.steps);
  record["steps"] = nlohmann::json::array();
  for (const UnlearnStep& st : s.steps)
    record["steps"].push_back({{"solve", ToJson(st.solve)},
                               {"solve_dtype", st.solve_dtype},
                               {"damping", st.damping},
                               {"step_length", st.step_length},
                               {"action", st.action},
                               {"kept_objective_before", st.kept_objective_before},
                               {"kept_objective_after", st.kept_objective_after},
                               {"kept_grad_norm_before", st.kept_grad_norm_before},
                               {"kept_grad_norm_after", st.kept_grad_norm_after}});
  record["kept_grad_norm_before"] = s.kept_grad_norm_before;
  record["kept_grad_norm_after"] = s.kept_grad_norm_after;
  record["delta_norm"] = s.delta_norm;
}

void AddFixedTensors(const Architecture& arch, nlohmann::json& record) {
  std::vector<std::string> frozen;
  arch.ForEachTensor([&](const LayerShape&, const TensorInfo& t) {
    if (!t.trainable) frozen.push_back(t.name);
  });
  if (frozen.empty()) return;
  record["fixed_tensors"] = frozen;
  record["fixed_tensors_note"] =
      "not part of the patch: whatever they learned from the forget set stays in the model";
}

}  // namespace lethe::cli
