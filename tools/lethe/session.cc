#include <numeric>
#include <algorithm>
#include "tools/lethe/session.h"

#include "common/error.h"
#include "common/quote.h"
#include "engine/unlearn.h"

#include <cmath>

namespace lethe::cli {

void SolverFlags::Add(po::options_description& desc, bool allow_inexact_option) {
  desc.add_options()
    ("solver", po::value(&solver)->default_value("auto"),
     "direct, cg, lissa or lanczos (auto: unlearn uses cg; influence direct where p <= 20000, else cg)")
    ("curvature", po::value(&curvature)->default_value("hessian"), "hessian or gauss-newton")
    ("damping", po::value(&damping)->default_value(0.0), "λ: solve with C + λI")
    ("cg-tolerance", po::value(&cg_tolerance)->default_value(1e-8),
     "cg: stop at ‖(C+λI)x − b‖ ≤ this · ‖b‖")
    ("cg-max-iterations", po::value(&cg_max_iterations)->default_value(1000), "cg iteration limit")
    ("preconditioner", po::value(&preconditioner)->default_value("auto"),
     "cg and lissa: kfac (Kronecker-factored approximation of each layer's curvature block), "
     "dense (the exact curvature at the first θ, Cholesky-factorised: p² values of memory, "
     "reused across unlearn --requests), none, or auto (kfac for a model with one linear "
     "layer, else none; unlearn --requests: dense where it fits --dense-max-gb)")
    ("dense-max-gb", po::value(&dense_max_gb)->default_value(4.0),
     "dense: refuse a factor above this size (p² · 8 bytes in f64, 4 in f32)")
    ("kfac-examples", po::value(&kfac_examples)->default_value(kfac_examples),
     "kfac: examples its factors are averaged over (at most; evenly spread blocks)")
    ("lissa-depth", po::value(&lissa.depth)->default_value(lissa.depth), "lissa: recursion depth")
    ("lissa-scale", po::value(&lissa.scale)->default_value(0.0),
     "lissa: scale s > λ_max/2 of the (preconditioned) operator (0: 0.55·λ_max, estimated by Lanczos)")
    ("lissa-batch", po::value(&lissa.batch_size)->default_value(lissa.batch_size),
     "lissa: examples per step (0: all; deterministic, stops at --lissa-tolerance)")
    ("lissa-repeats", po::value(&lissa.repeats)->default_value(lissa.repeats),
     "lissa: independent recursions averaged")
    ("lissa-tolerance", po::value(&lissa.relative_tolerance)->default_value(lissa.relative_tolerance),
     "lissa: converged only at ‖(C+λI)x − b‖ ≤ this · ‖b‖ (full batch: stops there)")
    ("rank", po::value(&rank)->default_value(100), "lanczos: eigenpairs kept")
    ("solver-seed", po::value(&lissa.seed)->default_value(0), "lissa / lanczos seed");
  if (allow_inexact_option)
    desc.add_options()("allow-inexact", po::bool_switch(&allow_inexact),
                       "write the scores even when the solve stopped short of its tolerance "
                       "(marked inexact; never after negative curvature or divergence)");
}

InverseHvpOptions SolverFlags::Resolve(int64_t num_params) const {
  InverseHvpOptions o;
  o.solver = solver == "auto" ? DefaultSolver(num_params) : ParseSolver(solver);
  if (curvature == "hessian")
    o.curvature = Curvature::kHessian;
  else if (curvature == "gauss-newton")
    o.curvature = Curvature::kGaussNewton;
  else
    Fail("--curvature ", curvature, ": unknown (known: hessian, gauss-newton)");
  o.damping = damping;
  o.cg.relative_tolerance = cg_tolerance;
  o.cg.max_iterations = cg_max_iterations;
  o.preconditioner = ParsePreconditioner(preconditioner);
  o.kfac.max_examples = kfac_examples;
  o.dense.max_bytes = dense_max_gb * 1e9;
  o.lissa = lissa;
  o.lanczos.rank = std::min<int64_t>(rank, num_params);
  o.lanczos.seed = lissa.seed;
  o.Validate();
  return o;
}

std::string StationarityWarning(double norm, const std::string& train_path,
                                const std::string& model_path, const std::string& consequence) {
  return "the model is not at a stationary point of its objective on " + train_path +
         " (‖∇L‖ = " + Sci(norm) + " > " + Sci(kStationarityTolerance, 0) + "): " + consequence +
         "; `lethe train --init " + model_path + " --data " + train_path +
         " --out FINISHED.safetensors` finishes its training (docs/formats.md)";
}

void ParseSteps(const std::string& text, UnlearnOptions& options) {
  if (text == "auto") {
    if (options.method != UnlearnMethod::kNewton)
      Fail("--steps auto: newton only (gradient ascent has no optimum to stop at)");
    options.until_stationary = true;
    options.stationary_tolerance = kStationarityTolerance;
    options.steps = kAutoSteps;
    return;
  }
  size_t used = 0;
  int steps = 0;
  try {
    steps = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || steps < 1)
    Fail("--steps ", Quote(text), ": expected a count >= 1 or auto");
  options.steps = steps;
}

std::string PatchOffOptimumWarning(double norm, size_t steps, const std::string& method) {
  if (norm <= kStationarityTolerance) return "";
  return "the patched model is not at the optimum of the kept objective (‖∇L₋ₛ‖ = " + Sci(norm) +
         " > " + Sci(kStationarityTolerance, 0) + " after " + std::to_string(steps) + " " +
         method + " step(s)): it approximates retraining, short of its optimum" +
         (method == "newton" ? "; --steps " + std::to_string(steps + 2) +
                                   " (or --steps auto: until ‖∇L₋ₛ‖ <= 1e-5) takes more Newton steps"
                             : std::string());
}

// Whether results may be written after solve `s`: yes when it converged; with
// --allow-inexact also when it merely stopped short of its tolerance (the results are then
// marked inexact on stderr and in --json). Never after negative curvature or divergence:
// those answers are not approximations of anything.
bool CheckConverged(const SolveSummary& s, bool allow_inexact, Warnings& warnings) {
  if (s.converged()) return true;
  const std::string what = std::string("the inverse-Hessian solve did not converge (") +
                           Name(s.termination) +
                           (std::isfinite(s.relative_residual)
                                ? ", relative residual " + Sci(s.relative_residual)
                                : std::string(", residual not computed")) +
                           (s.message.empty() ? "" : "; " + s.message) + ")";
  if (s.termination == Termination::kNegativeCurvature)
    Fail(what, "; nothing written",
         s.message.empty() ? ": the curvature is not positive definite here (is the model at a "
                             "minimum?); raise --damping or use --curvature gauss-newton"
                           : "");
  if (s.termination == Termination::kDiverged)
    Fail(what, "; nothing written: a diverged solve approximates nothing");
  if (!allow_inexact)
    Fail(what, "; nothing written (--allow-inexact writes the scores, marked inexact)");
  warnings.Add(what + ": writing the scores anyway (--allow-inexact); they are inexact, "
               "by about the relative residual");
  return false;
}

// The settings a solve actually used, for --json.
nlohmann::json SettingsJson(const InverseHvpOptions& o, const Architecture& arch,
                            const CommonOptions& common) {
  nlohmann::json j;
  j["solver"] = Name(o.solver);
  j["curvature"] = o.curvature == Curvature::kHessian ? "hessian" : "gauss-newton";
  j["damping"] = o.damping;
  if (o.solver == SolverKind::kCg) {
    j["preconditioner"] = Name(ResolvePreconditioner(o.preconditioner, arch));
    j["cg_tolerance"] = o.cg.relative_tolerance;
    j["cg_max_iterations"] = o.cg.max_iterations;
  }
  if (o.solver == SolverKind::kLissa) {
    j["lissa_depth"] = o.lissa.depth;
    j["lissa_repeats"] = o.lissa.repeats;
    j["lissa_batch"] = o.lissa.batch_size;
    j["lissa_scale"] = o.lissa.scale;
  }
  if (o.solver == SolverKind::kLanczos) j["rank"] = o.lanczos.rank;
  j["dtype"] = common.dtype;
  j["device"] = common.device;
  return j;
}

// The k indices of largest (descending) or smallest values.
std::vector<int64_t> Extremes(const double* v, int64_t n, int64_t k, bool largest) {
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min(k, n);
  // Ties go to the lowest index, as in the streamed selection (score_selection.h).
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    if (v[a] != v[b]) return largest ? v[a] > v[b] : v[a] < v[b];
    return a < b;
  });
  idx.resize(k);
  return idx;
}

nlohmann::json ScoresProvenanceJson(const InverseHvpOptions& options, const Model& model,
                                    const CommonOptions& common, const SolveSummary& summary,
                                    bool exact, double grad_norm, const Warnings& warnings) {
  nlohmann::json j;
  j["settings"] = SettingsJson(options, model.arch, common);
  j["solver"] = ToJson(summary);
  j["exact"] = exact;
  j["grad_norm"] = grad_norm;
  j["forgotten_excluded"] = static_cast<int64_t>(model.forgotten.ids.size());
  j["warnings"] = warnings.all();
  return j;
}

std::string Describe(const SolveSummary& s) {
  std::string line = "solver " + s.solver +
                     (s.preconditioner.empty() ? "" : " (" + s.preconditioner + " preconditioner)") +
                     ": " + Name(s.termination) + ", " +
                     std::to_string(s.iterations) + " iterations, " +
                     (s.residual_computed() ? "relative residual " + Sci(s.relative_residual)
                                            : std::string("residual not computed")) +
                     ", " + Fixed(s.seconds, 2) + " s" +
                     (s.setup_seconds > 0 ? " (setup " + Fixed(s.setup_seconds, 2) + " s)" : "");
  if (!s.message.empty()) line += " (" + s.message + ")";
  return line;
}

nlohmann::json ToJson(const SolveSummary& s) {
  nlohmann::json j;
  j["solver"] = s.solver;
  if (!s.preconditioner.empty()) j["preconditioner"] = s.preconditioner;
  j["termination"] = Name(s.termination);
  j["iterations"] = s.iterations;
  if (!s.rhs_iterations.empty()) j["rhs_iterations"] = s.rhs_iterations;
  // absent when not computed (a computed NaN is written as null)
  if (s.residual_computed()) j["relative_residual"] = s.relative_residual;
  j["seconds"] = s.seconds;
  if (s.setup_seconds > 0) j["setup_seconds"] = s.setup_seconds;
  if (!s.message.empty()) j["message"] = s.message;
  return j;
}

}  // namespace lethe::cli
