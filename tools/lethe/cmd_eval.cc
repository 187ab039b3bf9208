// lethe eval --model M --data D: how well a model fits data, and how close it is to a
// stationary point of its own objective on that data (‖∇L‖).
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "io/csv.h"
#include "engine/objective.h"
#include "tools/lethe/commands.h"
#include "tools/lethe/distributed_cli.h"
#include "tools/lethe/memory_budget.h"
#include "tools/lethe/session.h"
#include "tools/lethe/sisa_dir.h"

namespace lethe::cli {
namespace {

template <typename T>
int Eval(const Model& model, const io::Dataset& data, const CommonOptions& common,
         const std::string& model_path) {
  auto backend = kernels::MakeBackend<T>(common.Backend());
  Objective<T> objective(*backend, model.arch, UploadData(*backend, data),
                         BudgetedObjectiveOptions(data, model.arch, common, sizeof(T)));
  Distribute(objective);  // under mpirun: sums over every rank's rows
  std::vector<T> host(model.theta.begin(), model.theta.end());
  auto theta = backend->Allocate(1, model.arch.num_params);
  backend->Upload(host.data(), theta);
  const Metrics m = objective.Evaluate(theta);
  auto grad = backend->Allocate(1, model.arch.num_params);
  objective.ValueAndGradient(theta, grad);
  const double grad_norm = static_cast<double>(kernels::Norm(*backend, grad));
  const bool classifier = model.arch.spec.loss != LossKind::kMse;
  if (common.json) {
    nlohmann::json j;
    j["n"] = m.n;
    j["loss"] = m.loss;
    j["objective"] = m.objective;
    if (classifier) j["accuracy"] = m.accuracy;
    j["grad_norm"] = grad_norm;
    j["stationary"] = grad_norm <= kStationarityTolerance;
    j["forgotten"] = static_cast<int64_t>(model.forgotten.ids.size());
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << model_path << " on " << data.path << " (" << m.n << " examples, "
              << common.dtype << ", " << backend->Describe() << ")\n"
              << "  loss       " << io::FormatDouble(m.loss) << "   (mean example loss)\n"
              << "  objective  " << io::FormatDouble(m.objective) << "   (loss + l2/2 ‖θ‖²)\n";
    if (classifier) std::cout << "  accuracy   " << Fixed(100 * m.accuracy, 2) << " %\n";
    std::cout << "  grad_norm  " << Sci(grad_norm) << "   (‖∇objective‖ on this data"
              << (grad_norm <= kStationarityTolerance ? ": stationary" : "") << ")\n";
  }
  // eval cannot know whether DATA is the training data; when it is, a large gradient means
  // every influence score and patch of this model is taken off its optimum.
  int64_t forgotten_here = 0;
  for (int64_t id : data.ids) forgotten_here += model.forgotten.Contains(id);
  forgotten_here = SumOverRanks(forgotten_here);
  if (forgotten_here > 0)
    std::cerr << "lethe eval: note: " << data.path << " holds " << forgotten_here
              << " example(s) that " << model_path
              << " has forgotten; they are evaluated like the others (its optimum is over the "
                 "data without them, so grad_norm here is not its stationarity)\n";
  else if (!(grad_norm <= kStationarityTolerance))
    std::cerr << "lethe eval: note: ‖∇objective‖ = " << Sci(grad_norm) << " > "
              << Sci(kStationarityTolerance, 0) << ": if " << data.path
              << " is the training data, the model is not at a stationary point of lethe's "
                 "objective (trained with another loss or weight decay, or stopped early): "
                 "influence and unlearning will warn; lethe train --init finishes training "
                 "(docs/formats.md)\n";
  return 0;
}

}  // namespace

int RunEval(const std::vector<std::string>& args) {
  po::options_description desc("options");
  CommonOptions common;
  std::string model_path, data_path, spec_path;
  desc.add_options()("help,h", "show this help")
    ("model", po::value(&model_path), "safetensors model")
    ("data", po::value(&data_path), "data (.npz or .csv)")
    ("spec", po::value(&spec_path), "sidecar spec JSON (overrides the embedded one)");
  common.Add(desc);
  AddMaxMemory(desc, common);
  po::variables_map vm;
  if (!Parse(args, desc, nullptr, vm, "lethe eval --model MODEL --data DATA [--json]",
             "lethe eval --model examples/digits/model.safetensors --data examples/digits/test.npz --json"))
    return 0;
  Require(vm, "model");
  Require(vm, "data");
  if (IsEnsembleDir(model_path)) {  // lethe sisa
    if (!common.max_memory.empty()) Fail("--max-memory: not for a SISA ensemble DIR");
    // Under mpirun: each rank its block of rows, predicted by every constituent.
    return EvalEnsemble(model_path, data_path, common);
  }
  const Model model =
      LoadModel(model_path, spec_path.empty() ? std::nullopt : std::optional(spec_path));
  // Under mpirun: this rank's block; larger than --max-memory: streamed.
  const io::Dataset data = LoadTrainingRows(data_path, common, common.F32() ? 4 : 8);
  Collectively([&] { CheckDataMatchesModel(model.arch, data); });
  return common.F32() ? Eval<float>(model, data, common, model_path)
                      : Eval<double>(model, data, common, model_path);
}

}  // namespace lethe::cli
