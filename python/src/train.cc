// train: lethe train's engine calls (tools/lethe/cmd_train.cc, plain training: not --dp or
// --certified) with the same options: returns the trained model and the summary.
#include <pybind11/stl.h>

#include <algorithm>
#include <unordered_set>

#include "engine/trainer.h"
#include "io/spec.h"
#include "python/src/bridge.h"
#include "python/src/options.h"
#include "python/src/progress.h"

namespace lethe::py_module {
namespace {

template <typename T>
TrainSummary Run(Model& model, const Data& data, const std::vector<int64_t>& rows,
                 const TrainOptions& options, const cli::CommonOptions& common,
                 PythonProgress& progress) {
  Engine<T> engine(model, data, common, rows);
  const TrainSummary s = lethe::Train(*engine.train, engine.theta, options,
                                      [&](const TrainProgress& p) {
                                        progress.Report(p.phase, p.iteration, 0);
                                      });
  model.theta = engine.Download(engine.theta);
  return s;
}

py::tuple RunTrain(const py::object& start, const py::object& data_arg,
                   const py::object& forget_arg, const py::object& progress_callback,
                   const py::kwargs& kwargs) {
  CommandOptions o = ParseOptions("train", kwargs);
  TrainOptions options = o.train;
  options.optimizer = ParseOptimizer(o.optimizer);
  options.polish = !o.no_polish;
  options.seed = o.seed;
  options.Validate();
  const bool f32 = o.common.F32();
  o.common.Backend();

  Model model;
  std::string init_name, init_sha256;
  const bool init = py::isinstance<PyModel>(start);
  if (init) {
    const auto from_ptr = start.cast<std::shared_ptr<PyModel>>();
    const PyModel& from = *from_ptr;
    model = from.model;
    init_name = from.name;
    init_sha256 = from.sha256;
  }
  std::string note;
  const auto data = ExcludeForgotten(model.forgotten, AsData(data_arg, o.common), "train",
                                     init_name, &note);
  if (!init) {
    io::ModelSpec spec;
    if (py::isinstance<py::dict>(start))
      spec = io::ModelSpec::Parse(py::module_::import("json").attr("dumps")(start).cast<std::string>(),
                                  "spec");
    else if (py::isinstance<py::str>(start) ||
             py::isinstance(start, py::module_::import("os").attr("PathLike")))
      spec = io::ReadSpecFile(py::str(py::module_::import("os").attr("fspath")(start)));
    else
      throw py::type_error("train(): the first argument must be a spec (dict or path) or a lethe.Model");
    // The initialiser reads the data only for widths and labels (never X's values).
    model = InitializeModel(spec, data->meta(), o.seed, f32 ? io::DType::kF32 : io::DType::kF64);
  }
  CheckDataMatchesModel(model.arch, data->meta());

  std::vector<int64_t> rows;  // empty: all
  if (!forget_arg.is_none()) {
    const std::string what = "forget_ids";
    std::vector<int64_t> ids;
    for (int64_t id : forget_arg.cast<std::vector<int64_t>>())
      if (!model.forgotten.Contains(id)) ids.push_back(id);
    const std::vector<int64_t> drop = data->meta().RowsOf(ids, what);
    std::unordered_set<int64_t> dropped(drop.begin(), drop.end());
    for (int64_t i = 0; i < data->meta().n; ++i)
      if (!dropped.count(i)) rows.push_back(i);
    if (rows.empty()) Fail(what, ": forgets every example; nothing left to train on");
    std::sort(ids.begin(), ids.end());
    if (!ids.empty())
      model.forgotten.Add(ids, {"retrain", init_sha256, IdsSha256(ids),
                                static_cast<int64_t>(ids.size()), UtcNow()});
  }
  model.dp.reset();
  model.certified.reset();
  PythonProgress progress(progress_callback);
  const TrainSummary s = WithoutGil([&] {
    return f32 ? Run<float>(model, *data, rows, options, o.common, progress)
               : Run<double>(model, *data, rows, options, o.common, progress);
  });
  std::vector<std::string> warnings;
  if (!s.converged)
    warnings.push_back("NOT converged: ‖∇L‖ = " + cli::Sci(s.grad_norm) + " > tolerance " +
                       cli::Sci(options.gradient_tolerance) + " after " +
                       std::to_string(s.iterations) + " iterations (" + s.message +
                       "); influence and unlearning assume a minimiser and will warn on this model");
  nlohmann::json j;  // cmd_train.cc's --json, less the output path
  j["n"] = rows.empty() ? data->meta().n : static_cast<int64_t>(rows.size());
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
  j["objective"] = s.objective;
  j["grad_norm"] = s.grad_norm;
  j["seconds"] = s.seconds;
  if (!note.empty()) j["notes"] = nlohmann::json::array({note});
  auto trained = std::make_shared<PyModel>(PyModel{std::move(model), "<trained>", ""});
  return py::make_tuple(trained, ToPython(j));
}

}  // namespace

void BindTrain(py::module_& m) {
  m.def("train", &RunTrain, py::arg("spec"), py::arg("data"), py::kw_only(),
        py::arg("forget_ids") = py::none(), py::arg("progress") = py::none());
}

}  // namespace lethe::py_module
