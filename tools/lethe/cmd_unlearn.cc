// lethe unlearn: remove a forget set from a trained model with a Newton patch (or the
// gradient-ascent baseline), write the patched model and, on request, the erasure record
// and the proof against retraining (docs/unlearning.md).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <unordered_set>

#include "engine/audit.h"
#include "engine/trainer.h"
#include "engine/unlearn.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/sha256.h"
#include "tools/lethe/audit_distributed.h"
#include "tools/lethe/certified_unlearn.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/erasure_record.h"
#include "tools/lethe/comparison.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/png_canvas.h"
#include "tools/lethe/memory_budget.h"
#include "tools/lethe/session.h"
#include "tools/lethe/sisa_dir.h"
#include "tools/lethe/stream.h"
#include "tools/lethe/stream_serve.h"
#include "tools/lethe/unlearn_png.h"

namespace lethe::cli {
namespace {

struct Inputs {
  std::string model_path, train_path, out, report, forget_file, test_path;
  std::string png;  // --png: --verify's comparison as a picture
  std::vector<std::string> command_line;
  std::vector<int64_t> forget_ids;          // this request's ids, as given
  std::vector<int64_t> already_forgotten;   // of those, the ones the model had forgotten
  std::vector<int64_t> removed;             // the ids this request removes, sorted
  // Over every rank's rows under mpirun (docs/distributed.md); serially train.n and the
  // forget rows.
  int64_t n_total = 0, k_total = 0;
  std::string model_sha256;                 // of the input model file
  TrainOptions retrain;                     // --verify's retraining
  StreamOptions stream;                     // --ledger, --cache (tools/lethe/stream.h)
  StreamState stream_state;
  // A certified removal's state after this request (β, ε spent, …): recorded in the
  // ledger's line when set; absent for plain removals.
  std::optional<io::CertificateState> certificate;
};

// {"path": as given, "absolute": resolved, "sha256": …}
nlohmann::json FileJson(const std::string& path, bool hash = true) {
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  nlohmann::json j{{"path", path}, {"absolute", ec ? path : absolute.lexically_normal().string()}};
  if (hash) j["sha256"] = io::Sha256File(path);
  return j;
}

// Under mpirun every rank runs this with its block of the rows (docs/distributed.md):
// forget_rows are the forget set's rows in this rank's block (maybe none), the kept and
// forget objectives are distributed, so every step, solve and line search is the one of
// one process on the summed values; rank 0 alone writes (the model, the ledger line, the
// record) and prints. `test` is rank 0's (nullptr elsewhere).
template <typename T>
int Unlearn(const Model& model, const io::Dataset& train, const io::Dataset* test,
            const std::vector<int64_t>& forget_rows, const UnlearnOptions& options, bool verify,
            const CommonOptions& common, const Inputs& in,
            const std::vector<std::string>* pending_warnings) {
  const auto start = std::chrono::steady_clock::now();
  std::unordered_set<int64_t> forget_set(forget_rows.begin(), forget_rows.end());
  std::vector<int64_t> kept_rows;
  for (int64_t i = 0; i < train.n; ++i)
    if (!forget_set.count(i)) kept_rows.push_back(i);

  // The session's objective is the kept one: unlearning never needs all n rows at once
  // (‖∇L(θ)‖ over all of them comes from the kept and forget gradients).
  Session<T> session(model, train, common, kept_rows);
  Objective<T>& kept = *session.train;
  Distribute(kept);
  Progress progress(common.quiet);
  Warnings warnings("unlearn");
  for (const std::string& w : *pending_warnings) warnings.Add(w);
  progress.Announce("lethe unlearn: forgetting " + std::to_string(in.k_total) + " of " +
                    std::to_string(in.n_total) + " examples, " +
                    std::to_string(model.arch.num_params) + " parameters, " +
                    Name(options.method) + ", " + session.backend->Describe() +
                    (Distributed() ? ", " + std::to_string(Comm().size()) + " processes" : ""));
  // Streamed (--max-memory), the kept objective's options (its cache within the budget);
  // the f32 copy's cache, in 4-byte values, stays within the same share.
  const ObjectiveOptions oo = kept.options();
  // (UploadRows: a rank may hold none of the forget set's rows.)
  Objective<T> forget(*session.backend, model.arch, UploadRows(*session.backend, train, forget_rows), oo);
  Distribute(forget);
  // The kept rows again in f32 for the steps whose solve runs in f32 (UnlearnOptions).
  std::unique_ptr<kernels::Backend<float>> backend_f32;
  std::unique_ptr<Objective<float>> kept_f32;
  if (sizeof(T) > sizeof(float) && options.method == UnlearnMethod::kNewton &&
      (options.solve_precision == SolvePrecision::kF32 ||
       (options.solve_precision == SolvePrecision::kAuto &&
        options.inverse.solver == SolverKind::kCg))) {
    backend_f32 = kernels::MakeBackend<float>(common.Backend());
    kept_f32 = std::make_unique<Objective<float>>(
        *backend_f32, model.arch, UploadData(*backend_f32, train, kept_rows), oo);
    Distribute(*kept_f32);
  }
  auto theta = session.Upload(model.theta);
  Comm().ResetCounters();
  UnlearnOptions run_options = options;
  run_options.inverse.progress = &progress;
  const UnlearnSummary s = lethe::Unlearn(kept, forget, theta, run_options, kept_f32.get());
  const distributed::Counters counters = Comm().counters();  // the patch's reductions
  kept_f32.reset();
  backend_f32.reset();
  const double full_grad_norm = s.input_grad_norm;
  if (!(full_grad_norm <= kStationarityTolerance))
    warnings.Add("the model is not at a stationary point of its objective on " + in.train_path +
                 (model.forgotten.ids.empty() ? "" : " without the ids it had forgotten") +
                 " (‖∇L‖ = " + Sci(full_grad_norm) + " > " + Sci(kStationarityTolerance, 0) +
                 "): the patch also finishes its training, so its distance to retraining mixes "
                 "both; `lethe train --init " + in.model_path + " --data " + in.train_path +
                 " --out FINISHED.safetensors` finishes training first (docs/formats.md)");
  if (s.ok) {
    const std::string off = PatchOffOptimumWarning(s.kept_grad_norm_after, s.steps.size(), s.method);
    if (!off.empty()) warnings.Add(off);
  }
  // The steps are results (stdout), unless --json carries them.
  if (!common.json)
    for (size_t k = 0; k < s.steps.size(); ++k)
      std::cout << "step " << k + 1 << ": " << Describe(s.steps[k].solve) << " in "
                << s.steps[k].solve_dtype << "; damping " << s.steps[k].damping << "; "
                << s.steps[k].action << "; ‖∇L₋ₛ‖ " << Sci(s.steps[k].kept_grad_norm_before)
                << " → " << Sci(s.steps[k].kept_grad_norm_after) << "\n";
  if (!s.ok) Fail("unlearning failed, nothing written: ", s.message);

  Model patched = model;
  patched.theta = session.Download(theta);
  // A DP guarantee does not survive the patch: the Newton step reads the kept training
  // data outside the DP mechanism (docs/privacy.md), so the patched model claims none.
  patched.dp.reset();
  // The patched model carries what it has forgotten, so that no later command analyses or
  // patches it against data that still holds these examples (engine/forgotten.h).
  const std::string& parent_sha256 = in.model_sha256;
  const std::vector<int64_t>& removed = in.removed;
  patched.forgotten.Add(removed, {s.method, parent_sha256, IdsSha256(removed),
                                  static_cast<int64_t>(removed.size()), UtcNow()});
  // Rank 0 writes (every rank holds the same θ); a failure there stops every rank.
  const bool root = Comm().rank() == 0;
  Collectively([&] {
    if (!root) return;
    SaveModel(in.out, patched);
    FinishStream(in.stream, in.stream_state, in.model_path, parent_sha256, in.out, removed,
                 s.method, options.method == UnlearnMethod::kNewton ? Name(options.inverse.solver) : "",
                 patched.forgotten.requests.back().utc, in.certificate, s.steps);
  });
  const double patch_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::json report;
  report["lethe_version"] = LETHE_VERSION;
  report["utc"] = patched.forgotten.requests.back().utc;
  report["command_line"] = in.command_line;
  // The record is written or printed only on request: hash the files only then (hashing
  // the training data reads all of it again; under mpirun only rank 0, which writes it,
  // reads it, streamed through the hash).
  const bool record = (!in.report.empty() || common.json) && root;
  if (record) {
    report["input_model"] = FileJson(in.model_path, false);
    report["input_model"]["sha256"] = parent_sha256;
    report["training_data"] = FileJson(in.train_path);
    if (test) report["test_data"] = FileJson(in.test_path);
    report["forget_list"] = in.forget_file.empty()
                                ? nlohmann::json{{"ids_sha256", IdsSha256(in.forget_ids)}}
                                : FileJson(in.forget_file);
    report["forget_list"]["ids_sha256"] = IdsSha256(in.forget_ids);
  }
  // What the model had already forgotten: left out of the kept data (and of this request).
  report["previously_forgotten"] = {
      {"ids", static_cast<int64_t>(model.forgotten.ids.size())},
      {"requests", static_cast<int64_t>(model.forgotten.requests.size())},
      {"in_this_request", in.already_forgotten}};
  // Frozen layers are not patched (docs/unlearning.md): the record names what was left as it
  // was, so that nobody reads the patch as touching them.
  AddFixedTensors(model.arch, report);
  report["warnings"] = warnings.all();
  report["n"] = in.n_total;
  report["k"] = in.k_total;
  report["forget_ids"] = removed;
  AddPatchFields(options, s, report);
  report["input_grad_norm"] = full_grad_norm;
  report["seconds"] = patch_seconds;
  report["dtype"] = common.dtype;
  if (Distributed())  // what the patch's reductions cost (docs/distributed.md)
    report["communication"] = {{"processes", Comm().size()},
                               {"allreduces", counters.allreduces},
                               {"allreduce_values", counters.allreduce_values},
                               {"bytes_sent", counters.bytes_sent},
                               {"bytes_received", counters.bytes_received}};

  // --json: the erasure record goes to stdout instead of the tables (people get tables).
  const bool tables = !common.json;
  if (tables)
    std::cout << "patched model " << in.out << ": " << s.method << ", " << s.steps.size()
              << " step(s), ‖Δθ‖ " << Sci(s.delta_norm) << ", ‖∇L₋ₛ‖ "
              << Sci(s.kept_grad_norm_before) << " → " << Sci(s.kept_grad_norm_after) << ", "
              << Fixed(patch_seconds, 3) << " s\n";

  std::string picture;  // --png, written with the record
  if (verify) {
    // Retraining: the same optimiser and tolerance as `lethe train`, from the original
    // weights, on the same kept objective.
    Objective<T>& retrain_objective = kept;
    auto retrained_theta = session.Upload(model.theta);
    progress.Announce("verifying: retraining without the forget set (lethe train --forget --init)");
    const TrainSummary ts = lethe::Train(retrain_objective, retrained_theta, in.retrain);
    Model retrained = model;
    retrained.theta = session.Download(retrained_theta);
    report["verify"]["retrain"] = {{"optimizer", ts.optimizer},   {"converged", ts.converged},
                                   {"iterations", ts.iterations}, {"grad_norm", ts.grad_norm},
                                   {"seconds", ts.seconds}};
    // An unconverged reference is not "the retrained model": say so in its row, and qualify
    // every distance to it.
    const std::string retrained_name = ts.converged ? "retrained" : "retrained*";
    // Without --test: no test metrics and no membership audit. Under mpirun the audit is
    // complete on rank 0, which prints it (tools/lethe/audit_distributed.h).
    std::vector<ModelRow> rows = {
        {"original", model.theta, {}, -1},
        {"patched", patched.theta, {}, patch_seconds},
        {retrained_name, retrained.theta, {}, ts.seconds},
    };
    for (ModelRow& r : rows)
      r.audit = AuditRows<T>(*session.backend, model.arch, r.theta, train, forget_rows, test,
                             common.batch_size);
    if (!ts.converged) {
      const std::string caveat =
          "the retraining reference did not converge (‖∇L₋ₛ‖ = " + Sci(ts.grad_norm) + " > " +
          Sci(in.retrain.gradient_tolerance, 0) + ", " + ts.message +
          "): distances to it bound nothing, they compare two approximations";
      report["verify"]["reference_caveat"] = caveat;
      if (!common.json) warnings.Add(caveat);
    }
    report["verify"]["models"] = ComparisonJson(rows, 2, 0);
    if (!ts.converged) {  // machines read the key "retrained"; the caveat says the rest
      report["verify"]["models"]["retrained"] = report["verify"]["models"][retrained_name];
      report["verify"]["models"].erase(retrained_name);
      report["verify"]["models"]["retrained"]["converged"] = false;
    }
    report["verify"]["speedup"] = ts.seconds / patch_seconds;
    if (!in.png.empty()) {
      std::vector<BarModel> bars;
      for (const ModelRow& r : rows) {
        std::string name = r.name;
        for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        const bool tested = r.audit.test.n > 0;
        bars.push_back({name, r.audit.forget.loss, r.audit.kept.loss,
                        tested ? r.audit.test.loss : std::nan(""), r.audit.membership_auc});
      }
      picture = UnlearnBarsPng(bars, "UNLEARNING " + std::to_string(forget_rows.size()) + " OF " +
                                         std::to_string(train.n) + " EXAMPLES: " + s.method);
    }
    if (!test) report["verify"]["note"] = "no --test given: no test metrics, no membership audit";
    if (tables) {
      std::cout << "\n";
      PrintComparison(rows, 2, 0);
      if (!ts.converged)
        std::cout << "* retrained: NOT converged (‖∇L₋ₛ‖ = " << Sci(ts.grad_norm)
                  << "): the distances above are to an unconverged reference\n";
      std::cout << "unlearning took " << Fixed(patch_seconds, 3) << " s; retraining, warm-started "
                << "from the trained weights, " << Fixed(ts.seconds, 3) << " s (ratio "
                << Fixed(ts.seconds / patch_seconds, 1) << ")\n";
    }
  }
  report["warnings"] = warnings.all();
  if (record) report["patched_model"] = FileJson(in.out);
  if (!in.report.empty()) {
    Collectively([&] {
      if (root) io::WriteFileAtomically(in.report, report.dump(2) + "\n");
    });
    if (tables) std::cout << "erasure record: " << in.report << "\n";
  }
  if (!in.png.empty()) {
    io::WriteFileAtomically(in.png, picture);
    if (tables) std::cout << "wrote " << in.png << "\n";
  }
  if (common.json) std::cout << report.dump(2) << "\n";
  return 0;
}

}  // namespace

int RunUnlearn(const std::vector<std::string>& args) {
  // Certified removal has its own options and flow (tools/lethe/certified_unlearn.cc), and
  // so do a SISA ensemble (tools/lethe/sisa_patch.cc) and a file of requests
  // (tools/lethe/stream_serve.cc); all three run under mpirun (docs/distributed.md).
  const bool certified = WantsCertifiedUnlearn(args), ensemble = ArgsNameEnsemble(args),
             serve = WantsServeRequests(args);
  if (certified) return RunUnlearnCertified(args);
  for (const std::string& a : args)  // the paths below do not stream their data
    if (a == "--max-memory" || a.starts_with("--max-memory=")) {
      if (certified || ensemble || serve)
        Fail("--max-memory: only for lethe unlearn --model M --train T (one request, "
             "not --certified, --requests or a SISA ensemble)");
    }
  // A SISA ensemble directory: Newton patches per constituent (tools/lethe/sisa_patch.cc).
  if (ensemble) return RunUnlearnEnsemble(args);
  // A file of requests served by one process (tools/lethe/stream_serve.cc).
  if (serve) return RunUnlearnServe(args);
  po::options_description desc("options");
  CommonOptions common;
  SolverFlags flags;
  UnlearnOptions options;
  Inputs in;
  std::string method = "newton", spec_path, solve_dtype = "auto", steps = "1";
  bool verify = false;
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&in.model_path), "trained model (.safetensors)")
    ("train", po::value(&in.train_path), "the data it was trained on")
    ("forget", po::value<std::string>(), "ids to forget (file, one per line)")
    ("forget-ids", po::value<std::string>(), "ids to forget (comma-separated)")
    ("out", po::value(&in.out), "patched model (.safetensors)")
    ("method", po::value(&method)->default_value("newton"), "newton or gradient-ascent")
    ("steps", po::value(&steps)->default_value("1"),
     ("Newton (or gradient-ascent) steps; newton also `auto`: steps until ‖∇L₋ₛ‖ <= 1e-5, at most " +
      std::to_string(kAutoSteps)).c_str())
    ("learning-rate", po::value(&options.learning_rate)->default_value(0.01), "gradient-ascent step size")
    ("solve-dtype", po::value(&solve_dtype)->default_value("auto"),
     "newton: precision of each step's solve: f32, f64 (--dtype's), or auto (f32 for a CG "
     "solve when --dtype is f64 and its tolerance is >= 1e-4)")
    ("kept-weight", po::value(&options.kept_weight)->default_value(0.0),
     "gradient-ascent: also descend on the kept data with this weight")
    ("report", po::value(&in.report), "write the erasure record (JSON) here")
    ("verify", po::bool_switch(&verify), "also retrain without the forget set and compare")
    ("test", po::value(&in.test_path), "test data for --verify's metrics and membership audit")
    ("png", po::value(&in.png),
     "--verify: also a picture (.png) of original, patched and retrained side by side: forget, "
     "kept and test loss, membership AUC")
    ("verify-max-iterations", po::value(&in.retrain.max_iterations)->default_value(in.retrain.max_iterations),
     "--verify: iteration limit of the retraining (as lethe train --max-iterations); an "
     "unconverged reference is marked as such")
    ("spec", po::value(&spec_path), "sidecar spec JSON")
    ("certified", "certified removal of a model trained --certified (see lethe unlearn "
     "--certified --help)")
    ("requests", "serve a file of requests in one run (one process or mpirun -np P), each "
     "committed to --ledger before the next (see lethe unlearn --requests --help)");
  in.stream.Add(desc);
  flags.Add(desc, /*allow_inexact_option=*/false);
  common.Add(desc);
  AddMaxMemory(desc, common);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe unlearn --model M --train T (--forget FILE | --forget-ids LIST) --out PATCHED "
             "[--report R.json] [--verify]\n"
             "       lethe unlearn --model DIR --method newton (--forget FILE | --forget-ids LIST): "
             "Newton-patch a SISA ensemble's affected constituents (lethe unlearn --model DIR --help)",
             "lethe unlearn --model examples/digits/model.safetensors --train "
             "examples/digits/train.npz --forget examples/digits/forget.txt --out "
             "patched.safetensors --report erasure.json --verify"))
    return 0;
  for (const char* name : {"model", "train", "out"}) Require(vm, name);
  in.command_line = {"lethe", "unlearn"};
  in.command_line.insert(in.command_line.end(), args.begin(), args.end());
  in.retrain.Validate();
  options.method = ParseUnlearnMethod(method);
  ParseSteps(steps, options);
  options.solve_precision = ParseSolvePrecision(solve_dtype);
  const bool f32 = common.F32();
  if (f32 && options.solve_precision == SolvePrecision::kF64)
    Fail("--solve-dtype f64 needs --dtype f64 (the solve cannot be finer than the compute precision)");
  common.Backend();
  std::vector<std::string> inputs = {in.model_path, in.train_path};
  if (!spec_path.empty()) inputs.push_back(spec_path);
  if (!in.test_path.empty()) inputs.push_back(in.test_path);
  if (vm.count("forget")) in.forget_file = vm["forget"].as<std::string>(), inputs.push_back(in.forget_file);
  io::CheckOutputIsNotAnInput(in.out, inputs);
  io::CheckOutputCanBeWritten(in.out);
  if (!in.report.empty()) {
    io::CheckOutputIsNotAnInput(in.report, inputs);
    io::CheckOutputCanBeWritten(in.report);
    if (in.report == in.out) Fail("--report and --out name the same file");
  }
  if (!in.png.empty()) {
    if (!verify)
      Fail("--png ", in.png, ": draws --verify's comparison with retraining; add --verify (and "
           "--test for test loss and membership AUC)");
    CheckPngOutput(in.png, inputs, {in.out, in.report});
  }
  in.stream.Check(inputs, in.out);
  auto ids = ForgetIds(vm);
  if (!ids) Fail("--forget FILE or --forget-ids LIST is required");
  in.forget_ids = *ids;

  const Model model = LoadModel(in.model_path, spec_path.empty() ? std::nullopt : std::optional(spec_path));
  if (model.certified)
    Fail(in.model_path, ": trained with --certified, its objective holds the secret term bᵀθ: "
         "remove with lethe unlearn --certified --b FILE");
  in.model_sha256 = io::Sha256File(in.model_path);
  CheckSameFileOnEveryRank(in.model_path, in.model_sha256);
  // Under mpirun: this rank's block of the rows (tools/lethe/distributed_cli.h).
  const io::Dataset train = ExcludeForgottenRows(
      model.forgotten, LoadTrainingRows(in.train_path, common, f32 ? 4 : 8), "unlearn",
      in.model_path);
  Collectively([&] { CheckDataMatchesModel(model.arch, train); });
  if (train.streamed && verify)
    Fail("--verify: its retraining and audit hold the data in memory; not with the data streamed "
         "(--max-memory): verify with lethe train --forget and lethe compare");
  std::optional<io::Dataset> test;  // on rank 0 alone under mpirun (its audit's test set)
  if (!in.test_path.empty())
    Collectively([&] {
      if (Comm().rank() != 0) return;
      test = io::LoadDataset(in.test_path, common.Data());
      CheckDataMatchesModel(model.arch, *test);
    });
  // Ids this model has already forgotten need no second removal (a repeated request):
  // they are not in the kept data any more, so they are skipped, and said so.
  const std::string what = in.forget_file.empty() ? "--forget-ids" : in.forget_file;
  std::vector<int64_t> new_ids;
  for (int64_t id : in.forget_ids)
    (model.forgotten.Contains(id) ? in.already_forgotten : new_ids).push_back(id);
  std::vector<std::string> pending;
  if (!in.already_forgotten.empty()) {
    std::string list;
    for (size_t i = 0; i < in.already_forgotten.size() && i < 10; ++i)
      list += (i ? ", " : "") + std::to_string(in.already_forgotten[i]);
    if (in.already_forgotten.size() > 10) list += ", …";
    if (new_ids.empty())
      Fail(what, ": every id in this request (", list, ") was already forgotten by ", in.model_path,
           "; nothing to do");
    pending.push_back(std::to_string(in.already_forgotten.size()) + " id(s) of " + what + " (" +
                      list + ") were already forgotten by " + in.model_path + ": skipped");
  }
  // This rank's rows of the forget set (all of it serially); an id in no rank's rows is
  // the one-process error.
  const std::vector<int64_t> forget_rows = LocalRowsOf(train, new_ids, what);
  in.n_total = SumOverRanks(train.n);
  in.k_total = SumOverRanks(static_cast<int64_t>(forget_rows.size()));
  if (in.k_total >= in.n_total)
    Fail(in.forget_file.empty() ? "--forget-ids" : in.forget_file,
         ": forgets every example; nothing would be left");
  Collectively([&] {
    if (static_cast<int64_t>(forget_rows.size()) == train.n)
      Fail(what, ": forgets every row of process ", Comm().rank(),
           "'s block; run with fewer processes (mpirun -np)");
  });
  // The ids removed, sorted: the forget set's ids (each found once, in some rank's rows).
  in.removed = new_ids;
  std::sort(in.removed.begin(), in.removed.end());
  if (2 * in.k_total > in.n_total)
    pending.push_back("forgetting more than half of the data; a Newton patch is a local "
                      "approximation, consider retraining");
  // One right-hand side per step: CG's few passes beat forming the whole Hessian (on the
  // digits softmax, 35 CG iterations took 0.10 s where the direct solve took 0.73 s).
  if (flags.solver == "auto") flags.solver = "cg";
  options.inverse = flags.Resolve(model.arch.num_params);
  options.adaptive_cg_tolerance = vm["cg-tolerance"].defaulted();
  options.Validate();
  PrepareStream(in.stream, in.model_path, in.model_sha256, in.train_path, &options, &in.stream_state);
  return f32 ? Unlearn<float>(model, train, test ? &*test : nullptr, forget_rows, options, verify,
                             common, in, &pending)
             : Unlearn<double>(model, train, test ? &*test : nullptr, forget_rows, options, verify,
                              common, in, &pending);
}

}  // namespace lethe::cli
