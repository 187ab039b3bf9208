// What the analysis subcommands share: a model and its training data on a backend, and
// the solver options of the inverse-Hessian-vector products.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/inverse_hvp.h"
#include "engine/model.h"
#include "engine/objective.h"
#include <nlohmann/json.hpp>

#include "tools/lethe/cli.h"
#include "tools/lethe/memory_budget.h"

namespace lethe {
struct UnlearnOptions;  // engine/unlearn.h
}  // namespace lethe

namespace lethe::cli {

// --solver, --damping, --curvature and each solver's knobs.
struct SolverFlags {
  std::string solver = "auto", curvature = "hessian";
  double damping = 0;
  double cg_tolerance = 1e-8;
  int cg_max_iterations = 1000;
  std::string preconditioner = "auto";
  int64_t kfac_examples = KfacOptions{}.max_examples;
  double dense_max_gb = 4.0;
  LissaOptions lissa;
  int64_t rank = 100;
  bool allow_inexact = false;
  // allow_inexact_option: whether --allow-inexact is offered (influence commands only: an
  // unlearning step that fails writes nothing, whatever the flags).
  void Add(po::options_description& desc, bool allow_inexact_option = true);
  InverseHvpOptions Resolve(int64_t num_params) const;  // validates
};

template <typename T>
struct Session {
  std::unique_ptr<kernels::Backend<T>> backend;
  std::unique_ptr<Objective<T>> train;
  kernels::Matrix<T> theta;

  // A streamed `data` (--max-memory) gets its objective's options within the budget, with
  // `extra` (the command's own results) counted in it.
  Session(const Model& model, const io::Dataset& data, const CommonOptions& common,
          const std::vector<int64_t>& rows = {}, const ExtraMemory& extra = {}) {
    backend = kernels::MakeBackend<T>(common.Backend());
    train = std::make_unique<Objective<T>>(
        *backend, model.arch, UploadData(*backend, data, rows),
        BudgetedObjectiveOptions(data, model.arch, common, sizeof(T), extra));
    theta = Upload(model.theta);
  }
  kernels::Matrix<T> Upload(const std::vector<double>& values) {
    std::vector<T> host(values.begin(), values.end());
    kernels::Matrix<T> m = backend->Allocate(1, static_cast<int64_t>(values.size()));
    backend->Upload(host.data(), m);
    return m;
  }
  std::vector<double> Download(const kernels::Matrix<T>& m) {
    std::vector<T> host(m.size());
    backend->Download(m, host.data());
    return std::vector<double>(host.begin(), host.end());
  }
};

// ‖∇L(θ)‖ above which a model does not count as trained to a stationary point of its
// objective on its training data. Absolute, as `lethe train --tolerance` (default 1e-9,
// which lethe's own training meets): a model that only an optimiser with another
// objective (BCELoss after a sigmoid, nn.MSELoss without ½, label smoothing, a different
// weight decay) or an early stop left there misses it by orders of magnitude.
constexpr double kStationarityTolerance = 1e-5;

// --steps: a count of at least 1, or `auto` (newton only): steps until ‖∇L₋ₛ‖ ≤
// kStationarityTolerance, at most kAutoSteps (UnlearnOptions::until_stationary).
constexpr int kAutoSteps = 8;
void ParseSteps(const std::string& text, UnlearnOptions& options);

// The warning for a model whose ‖∇L(θ)‖ = norm is above kStationarityTolerance.
std::string StationarityWarning(double norm, const std::string& train_path,
                                const std::string& model_path, const std::string& consequence);

// The warning for a patch after which the kept objective's gradient ‖∇L₋ₛ(θ')‖ = norm is
// still above kStationarityTolerance (its `steps` steps of `method` stopped short of the
// optimum retraining would reach); empty when it is not.
std::string PatchOffOptimumWarning(double norm, size_t steps, const std::string& method);

// ‖∇L(θ)‖ of the session's training objective (one pass over the data). Above
// kStationarityTolerance, a warning says so, with the number and `consequence` (what it
// means for this command's results), and how to finish training.
template <typename T>
double CheckStationary(Session<T>& session, Warnings& warnings, const std::string& train_path,
                       const std::string& model_path, const std::string& consequence) {
  kernels::Matrix<T> grad = session.backend->Allocate(1, session.train->num_params());
  session.train->ValueAndGradient(session.theta, grad);
  const double norm = static_cast<double>(kernels::Norm(*session.backend, grad));
  if (!(norm <= kStationarityTolerance))
    warnings.Add(StationarityWarning(norm, train_path, model_path, consequence));
  return norm;
}

// Whether results may be written after solve `s`: yes when it converged; with
// allow_inexact also when it merely stopped short of its tolerance (then a warning says
// so and this returns false: the results are inexact). Throws lethe::Error after negative
// curvature or divergence, and for any other failure without allow_inexact.
bool CheckConverged(const SolveSummary& s, bool allow_inexact, Warnings& warnings);
// The settings a solve actually used, for --json.
nlohmann::json SettingsJson(const InverseHvpOptions& o, const Architecture& arch,
                            const CommonOptions& common);
// How influence scores were computed, as influence and self-influence report it (--json,
// one process or under mpirun, and Python's result dict): settings, solver, exact,
// grad_norm, forgotten_excluded, warnings.
nlohmann::json ScoresProvenanceJson(const InverseHvpOptions& options, const Model& model,
                                    const CommonOptions& common, const SolveSummary& summary,
                                    bool exact, double grad_norm, const Warnings& warnings);

// The k indices of the largest (descending) or smallest values of v[0, n): influence's tables.
std::vector<int64_t> Extremes(const double* v, int64_t n, int64_t k, bool largest);

// One line per summary for people: "solver direct: converged, 0 iterations, residual 3.1e-15".
std::string Describe(const SolveSummary& s);
// The summary as JSON (the report and --json outputs).
nlohmann::json ToJson(const SolveSummary& s);

}  // namespace lethe::cli
