// What a linear solve did: returned, never thrown (a numerical outcome is a result).
#pragma once

#include <string>
#include <vector>

namespace lethe {

enum class Termination { kConverged, kMaxIterations, kNegativeCurvature, kDiverged };

inline const char* Name(Termination t) {
  switch (t) {
    case Termination::kConverged: return "converged";
    case Termination::kMaxIterations: return "max-iterations";
    case Termination::kNegativeCurvature: return "negative-curvature";
    case Termination::kDiverged: return "diverged";
  }
  return "?";
}

struct SolveSummary {
  std::string solver;
  std::string preconditioner;  // cg: "kfac" or empty for none
  Termination termination = Termination::kConverged;
  int iterations = 0;
  // max over right-hand sides of ‖A x − b‖ / ‖b‖, recomputed explicitly at the end
  double relative_residual = 0;
  std::vector<double> relative_residuals;  // one per right-hand side
  double seconds = 0;
  double setup_seconds = 0;  // of `seconds`: building the preconditioner (cg)
  std::string message;
  bool converged() const { return termination == Termination::kConverged; }
};

}  // namespace lethe
