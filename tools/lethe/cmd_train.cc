// lethe train: fit a model to data. This is also the retraining baseline that
// unlearning is measured against (--forget trains without those examples, --init
// starts from given weights).
#include <cmath>
#include <cstring>
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_set>

#include "engine/model.h"
#include "io/csv.h"
#include "engine/objective.h"
#include "engine/trainer.h"
#include "io/atomic_file.h"
#include "io/sha256.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/forgotten_data.h"
#include "tools/lethe/memory_budget.h"
#include "tools/lethe/certified_train.h"
#include "tools/lethe/train_dp.h"

namespace lethe::cli {
namespace {

template <typename T>
int Train(Model model, const io::Dataset& data, const std::vector<int64_t>& rows,
          const TrainOptions& options, const CommonOptions& common, const std::string& out) {
  auto backend = kernels::MakeBackend<T>(common.Backend());
  Objective<T> objective(*backend, model.arch, UploadData(*backend, data, rows),
                         BudgetedObjectiveOptions(data, model.arch, common, sizeof(T)));
  // Under mpirun every rank runs the same optimiser on the same sums (docs/distributed.md).
  Distribute(objective);
  std::vector<T> host(model.theta.begin(), model.theta.end());
  auto theta = backend->Allocate(1, model.arch.num_params);
  backend->Upload(host.data(), theta);
  Progress progress(common.quiet);
  progress.Announce("lethe train: " + std::to_string(objective.global_examples()) + " examples, " +
                    std::to_string(model.arch.num_params) + " parameters, " +
                    Name(options.optimizer) + ", " + common.dtype + ", " + backend->Describe());
  // --json's `communication` counts the optimisation alone (not the loading's id checks).
  Comm().ResetCounters();
  const TrainSummary s = lethe::Train(objective, theta, options, [&](const TrainProgress& p) {
    progress.Update(std::string("  ") + p.phase + " " + std::to_string(p.iteration) +
                    "  objective " + io::FormatDouble(p.objective) +
                    (std::isnan(p.grad_norm) ? std::string(" (minibatch mean)")
                                             : "  ‖∇‖ " + Sci(p.grad_norm)));
  });
  backend->Download(theta, host.data());
  model.theta.assign(host.begin(), host.end());
  if (Comm().rank() == 0) SaveModel(out, model);  // every rank holds the same θ
  // Not converged is a result, not a failure (exit 0: the model asked for is written), but
  // it is said where the result is: in the summary line, in --json, and as a warning.
  // Adam is a stochastic optimiser with no stopping test; its ‖∇L‖ is reported all the same.
  std::vector<std::string> warnings;
  if (!s.converged)
    warnings.push_back("NOT converged: ‖∇L‖ = " + Sci(s.grad_norm) + " > tolerance " +
                       Sci(options.gradient_tolerance) + " after " + std::to_string(s.iterations) +
                       " iterations (" + s.message + "); influence and unlearning assume a "
                       "minimiser and will warn on this model");
  for (const std::string& w : warnings) Warn("train", w);
  if (common.json) {
    nlohmann::json j;
    j["out"] = out;
    j["n"] = objective.global_examples();
    j["num_params"] = model.arch.num_params;
    j["optimizer"] = s.optimizer;
    j["converged"] = s.converged;
    j["tolerance"] = options.gradient_tolerance;
    j["max_iterations"] = options.max_iterations;
    j["message"] = s.message;
    j["warnings"] = warnings;
    j["forgotten"] = static_cast<int64_t>(model.forgotten.ids.size());
    j["iterations"] = s.iterations;
    j["evaluations"] = s.evaluations;
    if (s.cg_iterations > 0) j["cg_iterations"] = s.cg_iterations;
    j["objective"] = s.objective;
    j["grad_norm"] = s.grad_norm;
    j["seconds"] = s.seconds;
    if (Distributed()) {  // what the reductions cost (docs/distributed.md)
      const distributed::Counters& c = Comm().counters();
      j["communication"] = {{"processes", Comm().size()}, {"allreduces", c.allreduces},
                            {"allreduce_values", c.allreduce_values},
                            {"bytes_sent", c.bytes_sent}, {"bytes_received", c.bytes_received}};
    }
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "trained " << out << ": " << s.optimizer << ", " << s.iterations
              << " iterations, " << s.evaluations << " gradient evaluations, "
              << Fixed(s.seconds, 2) << " s\n  objective " << io::FormatDouble(s.objective)
              << "   ‖∇L‖ " << Sci(s.grad_norm)
              << (s.converged ? "   (converged)" : "   (NOT converged: tolerance " +
                                                      Sci(options.gradient_tolerance) + ")")
              << "\n";
  }
  return 0;
}

}  // namespace

int RunTrain(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  TrainOptions options;
  DpFlags dp;
  CertifiedTrainFlags certified;
  std::string spec_path, data_path, out, init, optimizer = "lbfgs";
  uint64_t seed = 0;
  desc.add_options()("help,h", "show this help")
    ("spec", po::value(&spec_path), "architecture spec JSON (needed unless --init gives one)")
    ("data", po::value(&data_path), "training data (.npz or .csv)")
    ("out", po::value(&out), "output model (.safetensors)")
    ("init", po::value(&init), "start from this model's weights (default: PyTorch-style init)")
    ("forget", po::value<std::string>(), "train without these ids (file, one id per line)")
    ("forget-ids", po::value<std::string>(), "train without these ids (comma-separated)")
    ("optimizer", po::value(&optimizer)->default_value("lbfgs"), "lbfgs, newton-cg or adam")
    ("tolerance", po::value(&options.gradient_tolerance)->default_value(1e-9),
     "stop when ‖∇L‖ ≤ this")
    ("max-iterations", po::value(&options.max_iterations)->default_value(20000),
     "lbfgs / newton-cg iteration limit")
    ("no-polish", "lbfgs: do not finish with Newton-CG when the line search stalls")
    ("seed", po::value(&seed)->default_value(0),
     "initialisation and shuffling seed; with --dp also sampling and noise, and when not given "
     "a fresh one from std::random_device (whoever knows the seed can remove the noise)")
    ("epochs", po::value(&options.epochs)->default_value(100), "adam and --dp epochs")
    ("learning-rate", po::value(&options.learning_rate)->default_value(1e-3),
     "adam step size (--dp: SGD step size, default 0.5)")
    ("batch-size", po::value(&options.batch_size)->default_value(128),
     "adam minibatch size (--dp: expected batch size q·n)");
  dp.Add(desc);
  certified.Add(desc);
  common.Add(desc);
  AddMaxMemory(desc, common);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm,
             "lethe train --spec SPEC --data TRAIN --out MODEL [--forget FILE] [--init MODEL]",
             "lethe train --spec examples/digits/softmax.json --data examples/digits/train.npz "
             "--out model.safetensors\n  "
             "lethe train --dp --target-epsilon 4 --epochs 20 --spec examples/digits/softmax.json "
             "--data examples/digits/train.npz --out private.safetensors\n  "
             "lethe train --certified --sigma 10 --spec examples/digits/softmax.json --data "
             "examples/digits/train.npz --out certified.safetensors"))
    return 0;
  Require(vm, "data");
  Require(vm, "out");
  if (!vm.count("spec") && !vm.count("init")) Fail("--spec is required (or --init MODEL)");
  certified.Check(vm);
  dp.Check(vm);
  // A DP run's randomness must be unknown to an adversary: without --seed, a fresh one.
  if ((dp.enabled || certified.enabled) && vm["seed"].defaulted()) {
    std::random_device device;
    seed = (uint64_t{device()} << 32) ^ device();
    if (Distributed()) {  // one run: rank 0's seed on every rank (sampling and noise agree)
      std::string bytes(reinterpret_cast<const char*>(&seed), sizeof seed);
      Comm().Broadcast(&bytes, 0);
      std::memcpy(&seed, bytes.data(), sizeof seed);
    }
  }
  options.optimizer = ParseOptimizer(optimizer);
  options.polish = !vm.count("no-polish");
  options.seed = seed;
  options.Validate();
  const bool f32 = common.F32();
  common.Backend();

  std::vector<std::string> inputs = {data_path};
  if (!spec_path.empty()) inputs.push_back(spec_path);
  if (!init.empty()) inputs.push_back(init);
  if (vm.count("forget")) inputs.push_back(vm["forget"].as<std::string>());
  io::CheckOutputIsNotAnInput(out, inputs);
  io::CheckOutputCanBeWritten(out);

  Model model;
  std::string init_sha256;
  if (!init.empty()) {
    model = LoadModel(init, spec_path.empty() ? std::nullopt : std::optional(spec_path));
    init_sha256 = io::Sha256File(init);
  }
  // A model that has forgotten examples is trained on without them (engine/forgotten.h).
  // Under mpirun: this rank's block of rows (tools/lethe/distributed_cli.h).
  const io::Dataset data =
      ExcludeForgottenRows(model.forgotten, LoadTrainingRows(data_path, common, common.F32() ? 4 : 8),
                           "train", init);
  if (init.empty())
    model = InitializeModel(io::ReadSpecFile(spec_path), data, seed,
                            f32 ? io::DType::kF32 : io::DType::kF64);
  Collectively([&] { CheckDataMatchesModel(model.arch, data); });
  if (data.streamed && (dp.enabled || certified.enabled))
    Fail(dp.enabled ? "--dp" : "--certified", ": not with the data streamed (--max-memory): ",
         data_path, " is larger than half of the memory bound; train with lbfgs or newton-cg");

  std::vector<int64_t> rows;  // empty: all
  if (auto forget = ForgetIds(vm)) {
    const std::string what = vm.count("forget") ? vm["forget"].as<std::string>() : "--forget-ids";
    std::vector<int64_t> ids;
    for (int64_t id : *forget)
      if (!model.forgotten.Contains(id)) ids.push_back(id);
    const std::vector<int64_t> drop = LocalRowsOf(data, ids, what);
    std::unordered_set<int64_t> dropped(drop.begin(), drop.end());
    for (int64_t i = 0; i < data.n; ++i)
      if (!dropped.count(i)) rows.push_back(i);
    if (SumOverRanks(static_cast<int64_t>(rows.size())) == 0)
      Fail(what, ": forgets every example; nothing left to train on");
    Collectively([&] {
      if (rows.empty())
        Fail(what, ": forgets every row of process ", Comm().rank(),
             "'s block; run with fewer processes (mpirun -np)");
    });
    // The model is trained without these ids: it has forgotten them, and says so.
    std::sort(ids.begin(), ids.end());
    if (!ids.empty())
      model.forgotten.Add(ids, {"retrain", init_sha256, IdsSha256(ids),
                                static_cast<int64_t>(ids.size()), UtcNow()});
  }
  // Whatever the initial model carried about privacy, this run makes a new model.
  model.dp.reset();
  model.certified.reset();
  if (certified.enabled)
    return TrainCertified(model, data, rows, options, certified, seed, common, out);
  if (dp.enabled)
    return TrainWithDp(model, data, rows, dp,
                       {options.epochs, options.learning_rate, options.batch_size,
                        !vm["batch-size"].defaulted(), !vm["learning-rate"].defaulted(), seed},
                       common, out);
  return f32 ? Train<float>(model, data, rows, options, common, out)
             : Train<double>(model, data, rows, options, common, out);
}

}  // namespace lethe::cli
