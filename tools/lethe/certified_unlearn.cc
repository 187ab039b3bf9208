#include "tools/lethe/certified_unlearn.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_set>

#include "common/error.h"
#include "engine/certified/perturbation.h"
#include "engine/certified/removal_bound.h"
#include "engine/trainer.h"
#include "engine/unlearn.h"
#include "io/atomic_file.h"
#include "io/sha256.h"
#include "tools/lethe/audit_distributed.h"
#include "tools/lethe/certified_train.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/session.h"
#include "tools/lethe/stream.h"

namespace lethe::cli {

bool WantsCertifiedUnlearn(const std::vector<std::string>& args) {
  return std::find(args.begin(), args.end(), "--certified") != args.end();
}

namespace {

struct CertifiedInputs {
  std::string model_path, train_path, out, b_path, b_out, report, forget_file, on_budget = "refuse";
  std::string solver = "auto";
  double delta = 0, budget = 0;
  uint64_t seed = 0;
  bool seed_given = false;
  std::vector<int64_t> forget_ids;
  StreamOptions stream;  // --ledger only (tools/lethe/stream.h)
};

// What one removal step computed (sum-form quantities: the certificate's).
struct CertifiedStep {
  std::vector<double> theta;  // θ⁻
  certified::RemovalBound bound;
  double residual = 0;        // ‖∇L_b(θ⁻; D∖S)‖ measured (sum form)
  double kept_grad_before = 0;  // ‖Δ‖ (sum form)
  double step_norm = 0;       // ‖v‖
  UnlearnSummary summary;
  int64_t kept = 0;  // m, over every rank's rows
  distributed::Counters communication;  // the step's and the bound's reductions
};

// The Newton step on the perturbed kept objective and the bound on its gradient residual.
// Under mpirun (docs/distributed.md) every rank runs it with its block's kept and forget
// rows: the kept and forget objectives are distributed (every gradient and Hessian product
// sums all ranks' rows, bᵀθ/m added once with the global m), so Δ, v, ‖Δ − Hv‖ and the
// measured residual are one process's up to the reductions' rounding, on every rank alike;
// the bound's sums over the kept rows (XᵀX, ‖X‖_F², Σ‖uᵢ‖⁴) are reduced in one call.
CertifiedStep NewtonRemoval(const Model& model, const io::Dataset& train,
                            const std::vector<int64_t>& kept_rows,
                            const std::vector<int64_t>& forget_rows, const std::vector<double>& b,
                            const CertifiedInputs& in, const CommonOptions& common) {
  Session<double> session(model, train, common, kept_rows);
  Objective<double>& kept = *session.train;
  Distribute(kept);
  kept.SetLinearTerm(b);
  // The forget objective without b: ((m/n)·b/m) from the kept one is b/n, the whole
  // objective's term, in UnlearnSummary::input_grad_norm. (UploadRows: a rank may hold
  // none of the forget rows.)
  Objective<double> forget(*session.backend, model.arch,
                           UploadRows(*session.backend, train, forget_rows),
                           ObjectiveOptions{common.batch_size});
  Distribute(forget);
  UnlearnOptions options;
  options.method = UnlearnMethod::kNewton;
  options.steps = 1;
  options.solve_precision = SolvePrecision::kF64;
  options.adaptive_cg_tolerance = false;  // the solve's residual is part of β: solve tightly
  options.inverse.solver = in.solver == "auto" ? DefaultSolver(model.arch.num_params) : ParseSolver(in.solver);
  options.inverse.cg.relative_tolerance = 1e-12;
  options.inverse.cg.max_iterations = 10000;
  options.Validate();
  auto theta = session.Upload(model.theta);
  CertifiedStep step;
  Comm().ResetCounters();
  step.summary = lethe::Unlearn(kept, forget, theta, options);
  if (!step.summary.ok) Fail("unlearning failed, nothing written: ", step.summary.message);
  step.theta = session.Download(theta);

  // v = θ − θ⁻ and ‖Δ − Hv‖ in sum form: m·(∇L₋ₛ(θ) − H₋ₛ v) of the mean-form objective.
  step.kept = kept.global_examples();
  const double m = static_cast<double>(step.kept);
  const int64_t p = model.arch.num_params;
  std::vector<double> v(p);
  for (int64_t j = 0; j < p; ++j) v[j] = model.theta[j] - step.theta[j];
  auto& be = *session.backend;
  auto theta0 = session.Upload(model.theta);
  auto grad = be.Allocate(1, p), hv = be.Allocate(1, p), vd = session.Upload(v);
  kept.ValueAndGradient(theta0, grad);
  kept.CurvatureProduct(Curvature::kHessian, theta0, vd, hv);
  std::vector<double> g = session.Download(grad), h = session.Download(hv);
  double solve = 0, delta2 = 0, v2 = 0;
  for (int64_t j = 0; j < p; ++j) {
    solve += (g[j] - h[j]) * (g[j] - h[j]);
    delta2 += g[j] * g[j];
    v2 += v[j] * v[j];
  }
  kept.ValueAndGradient(session.Upload(step.theta), grad);
  std::vector<double> after = session.Download(grad);
  double r2 = 0;
  for (double x : after) r2 += x * x;
  step.residual = m * std::sqrt(r2);
  step.kept_grad_before = m * std::sqrt(delta2);
  step.step_norm = std::sqrt(v2);

  // The kept rows' features on the host, for ‖X̃‖₂ and the logit changes.
  std::vector<double> X(kept_rows.size() * static_cast<size_t>(train.d));
  for (size_t r = 0; r < kept_rows.size(); ++r)
    std::copy_n(train.X.data() + kept_rows[r] * train.d, train.d, X.data() + r * train.d);
  certified::SumOverProcesses sum_over_processes;  // none serially: the rows are all here
  if (Distributed())
    sum_over_processes = [](double* values, int64_t count) { Comm().AllreduceSum(values, count); };
  step.bound = certified::BoundRemoval(model.arch, v, X.data(),
                                       static_cast<int64_t>(kept_rows.size()), m * std::sqrt(solve),
                                       sum_over_processes);
  step.communication = Comm().counters();
  return step;
}

}  // namespace

int RunUnlearnCertified(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  CertifiedInputs in;
  std::string spec_path;
  bool certified_flag = false;
  desc.add_options()("help,h", "show this help")
    ("certified", po::bool_switch(&certified_flag), "certified removal (Guo et al. 2020)")
    ("model", po::value(&in.model_path), "model trained with lethe train --certified")
    ("train", po::value(&in.train_path), "the data it was trained on")
    ("forget", po::value<std::string>(), "ids to forget (file, one per line)")
    ("forget-ids", po::value<std::string>(), "ids to forget (comma-separated)")
    ("out", po::value(&in.out), "patched model (.safetensors)")
    ("b", po::value(&in.b_path), "the model's secret perturbation (written by train --certified)")
    ("delta", po::value(&in.delta), "δ of the (ε, δ) certificate")
    ("epsilon-budget", po::value(&in.budget), "refuse (or retrain) when ε would exceed this")
    ("on-budget", po::value(&in.on_budget)->default_value("refuse"),
     "when the budget would be exceeded: refuse (exit 1, nothing written) or retrain (from "
     "scratch without the forgotten ids, fresh b to --b-out, budget reset)")
    ("b-out", po::value(&in.b_out), "--on-budget retrain: the new b (default PATCHED.b.npy)")
    ("seed", po::value(&in.seed), "--on-budget retrain: seed of the fresh b and initialisation "
     "(default: from std::random_device; whoever knows it knows b)")
    ("solver", po::value(&in.solver)->default_value("auto"),
     "the Newton step's solve: direct, cg (relative tolerance 1e-12) or auto")
    ("report", po::value(&in.report), "write the erasure record (JSON) here (b is never in it)")
    ("spec", po::value(&spec_path), "sidecar spec JSON")
    ("ledger", po::value(&in.stream.ledger),
     "append this request, with its certificate state (β, ε), to the deletion ledger FILE "
     "(refused unless the model is the ledger's head; lethe ledger verify FILE)");
  common.Add(desc);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe unlearn --certified --model M --b M.b.npy --train T (--forget FILE | "
             "--forget-ids LIST) --delta D --epsilon-budget E --out PATCHED [--on-budget retrain]",
             "lethe unlearn --certified --model certified.safetensors --b certified.b.npy "
             "--train examples/digits/train.npz --forget-ids 3 --delta 1e-5 --epsilon-budget 1 "
             "--out patched.safetensors"))
    return 0;
  for (const char* name : {"model", "train", "out", "b", "delta", "epsilon-budget"}) Require(vm, name);
  if (!(in.delta > 0 && in.delta < 1)) Fail("--delta = ", in.delta, ": must be in (0, 1)");
  if (!(in.budget > 0) || !std::isfinite(in.budget))
    Fail("--epsilon-budget = ", in.budget, ": must be > 0");
  if (in.on_budget != "refuse" && in.on_budget != "retrain")
    Fail("--on-budget ", in.on_budget, ": unknown (known: refuse, retrain)");
  if (in.on_budget != "retrain")
    for (const char* name : {"b-out", "seed"})
      if (vm.count(name)) Fail("--", name, " needs --on-budget retrain");
  in.seed_given = vm.count("seed");
  if (in.solver != "auto" && in.solver != "direct" && in.solver != "cg")
    Fail("--solver ", in.solver, ": unknown for --certified (known: auto, direct, cg)");
  common.Backend();
  std::vector<std::string> inputs = {in.model_path, in.train_path, in.b_path};
  if (!spec_path.empty()) inputs.push_back(spec_path);
  if (vm.count("forget")) in.forget_file = vm["forget"].as<std::string>(), inputs.push_back(in.forget_file);
  io::CheckOutputIsNotAnInput(in.out, inputs);
  io::CheckOutputCanBeWritten(in.out);
  in.stream.Check(inputs, in.out);
  if (!in.report.empty()) {
    io::CheckOutputIsNotAnInput(in.report, inputs);
    io::CheckOutputCanBeWritten(in.report);
    if (in.report == in.out) Fail("--report and --out name the same file");
  }
  if (in.on_budget == "retrain") {
    if (in.b_out.empty()) in.b_out = PerturbationPathFor(in.out);
    io::CheckOutputIsNotAnInput(in.b_out, inputs);
    io::CheckOutputCanBeWritten(in.b_out);
    if (in.b_out == in.out || in.b_out == in.report) Fail("--b-out names another output");
  }
  auto ids = ForgetIds(vm);
  if (!ids) Fail("--forget FILE or --forget-ids LIST is required");
  in.forget_ids = *ids;

  const Model model =
      LoadModel(in.model_path, spec_path.empty() ? std::nullopt : std::optional(spec_path));
  if (!model.certified)
    Fail(in.model_path, ": not trained with lethe train --certified: there is no certificate to "
         "extend (plain lethe unlearn patches it without one)");
  CheckCertifiable(model, common, in.model_path);
  const certified::CertifiedRecord& record = *model.certified;
  if (record.l2 != model.arch.spec.l2 || record.loss != Name(model.arch.spec.loss))
    Fail(in.model_path, ": its certified record (loss ", record.loss, ", l2 ", Shortest(record.l2),
         ") does not match its spec (loss ", Name(model.arch.spec.loss), ", l2 ",
         Shortest(model.arch.spec.l2), ")");
  // Under mpirun (docs/distributed.md): rank 0 reads b and sends it; every rank reads its
  // block of the training rows; rank 0 alone writes (model, b, ledger line, record).
  const bool root = Comm().rank() == 0;
  const std::vector<double> b = ReadPerturbation(in.b_path, model, in.model_path);
  const std::string model_sha256 = io::Sha256File(in.model_path);
  if (!in.stream.ledger.empty())
    Collectively([&] {
      if (root) io::CheckLedgerHead(in.stream.ledger, in.model_path, model_sha256);
    });
  const io::Dataset train = ExcludeForgottenRows(
      model.forgotten, LoadRows(in.train_path, common.Data()), "unlearn", in.model_path);
  Collectively([&] { CheckDataMatchesModel(model.arch, train); });
  const int64_t n_total = SumOverRanks(train.n);
  if (n_total != record.examples)
    Fail(in.train_path, ": ", n_total, " examples (without the ids the model has forgotten), but ",
         in.model_path, " stands for ", record.examples, ": not the data it was trained on");
  const std::string what = in.forget_file.empty() ? "--forget-ids" : in.forget_file;
  std::vector<int64_t> new_ids, already;
  for (int64_t id : in.forget_ids) (model.forgotten.Contains(id) ? already : new_ids).push_back(id);
  if (new_ids.empty())
    Fail(what, ": every id in this request was already forgotten by ", in.model_path, "; nothing to do");
  if (!already.empty())
    Warn("unlearn", std::to_string(already.size()) + " id(s) of " + what +
                        " were already forgotten by " + in.model_path + ": skipped");
  // This rank's rows of the forget set; an id in no rank's rows is the one-process error.
  const std::vector<int64_t> forget_rows = LocalRowsOf(train, new_ids, what);
  if (SumOverRanks(static_cast<int64_t>(forget_rows.size())) >= n_total)
    Fail(what, ": forgets every example; nothing would be left");
  Collectively([&] {
    if (static_cast<int64_t>(forget_rows.size()) == train.n)
      Fail(what, ": forgets every row of process ", Comm().rank(),
           "'s block; run with fewer processes (mpirun -np)");
  });
  std::unordered_set<int64_t> forget_set(forget_rows.begin(), forget_rows.end());
  std::vector<int64_t> kept_rows;
  for (int64_t i = 0; i < train.n; ++i)
    if (!forget_set.count(i)) kept_rows.push_back(i);
  // The ids removed, sorted: each found once, in some rank's rows.
  std::vector<int64_t> removed = new_ids;
  std::sort(removed.begin(), removed.end());

  const auto start = std::chrono::steady_clock::now();
  const CertifiedStep step = NewtonRemoval(model, train, kept_rows, forget_rows, b, in, common);
  const double beta = record.beta + step.bound.beta;
  const double epsilon = certified::CertifiedEpsilon(beta, record.sigma, in.delta);
  const bool over = epsilon > in.budget;
  // (ε to 7 digits: the same line under mpirun, whose sums differ in the last digits.)
  if (over && in.on_budget == "refuse")
    Fail("certified removal refused, nothing written: this removal's bound ",
         Sci(step.bound.beta), " brings β to ", Sci(beta), ", ε = c·β/σ = ", Sci(epsilon, 6),
         " at δ = ", Shortest(in.delta), " > --epsilon-budget ", Shortest(in.budget),
         " (", record.removals, " removal(s) so far); retrain (lethe train --certified) or "
         "give --on-budget retrain");

  Model result = model;
  std::string action;
  TrainSummary retrain_summary;
  if (!over) {
    action = "certified-newton";
    result.theta = step.theta;
    certified::CertifiedRecord& r = *result.certified;
    r.examples = step.kept;
    r.removals += 1;
    r.removed += static_cast<int64_t>(removed.size());
    r.beta = beta;
    r.delta = in.delta;
    r.epsilon = epsilon;
    r.epsilon_budget = in.budget;
    r.x_norm_bound = step.bound.x_norm_upper;
  } else {
    // --on-budget retrain: from scratch on the kept data, a fresh b, the budget reset.
    action = "retrain";
    uint64_t seed = in.seed;
    if (!in.seed_given) {
      std::random_device device;
      seed = (uint64_t{device()} << 32) ^ device();
      if (Distributed()) {  // one run: rank 0's seed on every rank
        std::string bytes(reinterpret_cast<const char*>(&seed), sizeof seed);
        Comm().Broadcast(&bytes, 0);
        std::memcpy(&seed, bytes.data(), sizeof seed);
      }
    }
    result = InitializeModel(model.arch.spec, train, seed, io::DType::kF64);
    // The spec's widths come from the model file, but where it leaves the output width to
    // the data, a rank's block alone decides it: it must be the model's on every rank.
    Collectively([&] {
      if (result.arch.num_params != model.arch.num_params)
        Fail(in.train_path, ": retraining ", in.model_path, "'s spec on these rows gives ",
             result.arch.num_params, " parameters, not its ", model.arch.num_params,
             "; give the spec's last layer its \"out\" width");
    });
    result.dtype = model.dtype;
    result.forgotten = model.forgotten;
    const std::vector<double> fresh = DrawPerturbationOnRoot(seed, model.arch.num_params, record.sigma);
    TrainOptions options;
    options.seed = seed;
    options.Validate();
    retrain_summary = FitCertified(result, train, kept_rows, options, fresh, record.sigma, common);
    WritePerturbationOnRoot(in.b_out, fresh);
  }
  result.forgotten.Add(removed, {action, model_sha256, IdsSha256(removed),
                                 static_cast<int64_t>(removed.size()), UtcNow()});
  // Rank 0 writes (every rank holds the same θ); a failure there stops every rank.
  Collectively([&] {
    if (!root) return;
    SaveModel(in.out, result);
    if (!in.stream.ledger.empty()) {
      // The ledger line carries the certificate state after this request (io/ledger.h).
      std::optional<io::CertificateState> certificate;
      if (result.certified)
        certificate = io::CertificateState{result.certified->beta, result.certified->epsilon,
                                           result.certified->epsilon_budget,
                                           result.certified->delta, result.certified->sigma};
      FinishStream(in.stream, StreamState{}, in.model_path, model_sha256, in.out, removed, action,
                   "certified", result.forgotten.requests.back().utc, certificate, {});
    }
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::ordered_json j;
  j["method"] = action;
  j["out"] = in.out;
  j["k"] = static_cast<int64_t>(removed.size());
  j["forget_ids"] = removed;
  j["already_forgotten"] = already;
  j["examples_kept"] = step.kept;
  j["step"] = {{"beta", step.bound.beta},
               {"solve_residual", step.bound.solve_residual},
               {"taylor", step.bound.taylor},
               {"x_norm_upper", step.bound.x_norm_upper},
               {"x_norm_estimate", step.bound.x_norm_estimate},
               {"residual_measured", step.residual},
               {"kept_grad_norm_before", step.kept_grad_before},
               {"step_norm", step.step_norm},
               {"solve", ToJson(step.summary.steps.at(0).solve)},
               {"step_length", step.summary.steps.at(0).step_length}};
  j["beta_would_be"] = beta;
  j["epsilon_would_be"] = epsilon;
  j["delta"] = in.delta;
  j["epsilon_budget"] = in.budget;
  if (over)
    j["retrain"] = {{"b_out", in.b_out},
                    {"converged", retrain_summary.converged},
                    {"iterations", retrain_summary.iterations},
                    {"grad_norm", retrain_summary.grad_norm}};
  j["certified"] = nlohmann::json::parse(result.certified->ToJson());
  j["input_model"] = {{"path", in.model_path}, {"sha256", model_sha256}};
  // The file is rank 0's (the other ranks print nothing: only rank 0 reads it back).
  j["patched_model"] = {{"path", in.out}, {"sha256", root ? io::Sha256File(in.out) : ""}};
  j["seconds"] = seconds;
  if (Distributed())  // what the step's and the bound's reductions cost (docs/distributed.md)
    j["communication"] = {{"processes", Comm().size()},
                          {"allreduces", step.communication.allreduces},
                          {"allreduce_values", step.communication.allreduce_values},
                          {"bytes_sent", step.communication.bytes_sent},
                          {"bytes_received", step.communication.bytes_received}};
  if (!in.report.empty())
    Collectively([&] {
      if (root) io::WriteFileAtomically(in.report, j.dump(2) + "\n");
    });
  if (common.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  const certified::CertifiedRecord& r = *result.certified;
  if (!over)
    std::cout << "certified removal of " << removed.size() << " example(s) → " << in.out
              << ": bound " << Sci(step.bound.beta) << " (solve " << Sci(step.bound.solve_residual)
              << " + Taylor " << Sci(step.bound.taylor) << ", ‖X‖₂ ≤ "
              << Shortest(step.bound.x_norm_upper) << "), measured residual "
              << Sci(step.residual) << "\n  β = " << Sci(r.beta) << " over " << r.removals
              << " removal(s): ε = " << Shortest(r.epsilon) << " at δ = " << Shortest(in.delta)
              << " (budget " << Shortest(in.budget) << ", σ = " << Shortest(r.sigma) << ")\n";
  else
    std::cout << "budget reached (ε would be " << Shortest(epsilon) << " > "
              << Shortest(in.budget) << "): retrained " << in.out << " from scratch without the "
              << removed.size() << " example(s), " << retrain_summary.iterations
              << " iterations; fresh perturbation written to " << in.b_out << "; β = 0\n";
  if (!in.report.empty()) std::cout << "erasure record: " << in.report << "\n";
  return 0;
}

}  // namespace lethe::cli
