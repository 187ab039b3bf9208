#include "tools/lethe/comparison.h"

#include <cmath>
#include <cstdio>
#include <iostream>

#include "tools/lethe/cli.h"

namespace lethe::cli {
namespace {

nlohmann::json SetJson(const SetMetrics& m) {
  nlohmann::json j;
  j["n"] = m.n;
  j["loss"] = m.loss;
  if (std::isfinite(m.accuracy)) j["accuracy"] = m.accuracy;
  return j;
}

std::string Pct(double x) { return std::isfinite(x) ? Fixed(100 * x, 2) + "%" : "-"; }

// ‖a − b‖, or NaN where the rows carry no comparable parameters (an ensemble against a
// model: tools/lethe/sisa_compare.h).
double MaybeDistance(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || b.empty() || a.size() != b.size()) return std::nan("");
  return Distance(a, b);
}

}  // namespace

void PrintComparison(const std::vector<ModelRow>& rows, int reference, int original) {
  std::printf("%-12s %9s %11s %11s %10s %10s %10s %9s %9s\n", "model", "time", "‖θ−θ_ref‖",
              "relative", "forget", "forget", "kept", "test", "member");
  std::printf("%-12s %9s %11s %11s %10s %10s %10s %9s %9s\n", "", "(s)", "", "", "loss", "acc",
              "loss", "acc", "AUC");
  const double denom = reference >= 0 && original >= 0
                           ? MaybeDistance(rows[original].theta, rows[reference].theta)
                           : std::nan("");
  for (const ModelRow& r : rows) {
    const double dist = reference >= 0 ? MaybeDistance(r.theta, rows[reference].theta) : std::nan("");
    std::printf("%-12s %9s %11s %11s %10.6f %10s %10.6f %9s %9s\n", r.name.c_str(),
                r.seconds >= 0 ? Fixed(r.seconds, 3).c_str() : "-",
                std::isfinite(dist) ? Sci(dist).c_str() : "-",
                std::isfinite(dist / denom) ? Sci(dist / denom).c_str() : "-", r.audit.forget.loss,
                Pct(r.audit.forget.accuracy).c_str(), r.audit.kept.loss,
                Pct(r.audit.test.accuracy).c_str(),
                std::isfinite(r.audit.membership_auc) ? Fixed(r.audit.membership_auc, 4).c_str() : "-");
  }
  if (reference >= 0)
    std::printf("distances to %s%s; member AUC: loss-threshold attack, forget set vs test set "
                "(0.5 = indistinguishable)\n",
                rows[reference].name.c_str(),
                original >= 0 ? (", relative to " + rows[original].name).c_str() : "");
}

nlohmann::json ComparisonJson(const std::vector<ModelRow>& rows, int reference, int original) {
  nlohmann::json out = nlohmann::json::object();
  const double denom = reference >= 0 && original >= 0
                           ? MaybeDistance(rows[original].theta, rows[reference].theta)
                           : std::nan("");
  for (const ModelRow& r : rows) {
    nlohmann::json j;
    if (r.seconds >= 0) j["seconds"] = r.seconds;
    if (reference >= 0) {
      const double dist = MaybeDistance(r.theta, rows[reference].theta);
      j["distance_to_reference"] = std::isfinite(dist) ? nlohmann::json(dist) : nlohmann::json(nullptr);
      if (std::isfinite(denom) && denom > 0) j["relative_distance"] = dist / denom;
      if (!r.audit.test_predictions.empty())
        j["test_agreement_with_reference"] = PredictionAgreement(r.audit, rows[reference].audit);
    }
    j["forget"] = SetJson(r.audit.forget);
    j["kept"] = SetJson(r.audit.kept);
    j["test"] = SetJson(r.audit.test);
    if (std::isfinite(r.audit.membership_auc)) j["membership_auc"] = r.audit.membership_auc;
    out[r.name] = j;
  }
  return out;
}

}  // namespace lethe::cli
