// unlearn: lethe unlearn's engine calls (tools/lethe/cmd_unlearn.cc) with the same options
// and checks; returns the patched model and the erasure record (the CLI's --report fields
// that do not describe files: the inputs here may be arrays).
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include "engine/unlearn.h"
#include "tools/lethe/erasure_record.h"
#include "python/src/bridge.h"
#include "python/src/options.h"
#include "python/src/progress.h"

namespace lethe::py_module {
namespace {

struct Outcome {
  UnlearnSummary summary;
  std::vector<double> theta;
  double seconds = 0;
};

template <typename T>
Outcome Run(const Model& model, const Data& train, const std::vector<int64_t>& forget_rows,
            const UnlearnOptions& options, const cli::CommonOptions& common, ProgressSink* progress) {
  const auto start = std::chrono::steady_clock::now();
  std::unordered_set<int64_t> forget_set(forget_rows.begin(), forget_rows.end());
  std::vector<int64_t> kept_rows;
  for (int64_t i = 0; i < train.meta().n; ++i)
    if (!forget_set.count(i)) kept_rows.push_back(i);
  Engine<T> engine(model, train, common, kept_rows);
  ObjectiveOptions oo{common.batch_size};
  Objective<T> forget(*engine.backend, model.arch, train.Upload(*engine.backend, forget_rows), oo);
  std::unique_ptr<kernels::Backend<float>> backend_f32;
  std::unique_ptr<Objective<float>> kept_f32;
  if (sizeof(T) > sizeof(float) && options.method == UnlearnMethod::kNewton &&
      (options.solve_precision == SolvePrecision::kF32 ||
       (options.solve_precision == SolvePrecision::kAuto &&
        options.inverse.solver == SolverKind::kCg))) {
    backend_f32 = kernels::MakeBackend<float>(common.Backend());
    kept_f32 = std::make_unique<Objective<float>>(*backend_f32, model.arch,
                                                  train.Upload(*backend_f32, kept_rows), oo);
  }
  auto theta = engine.Upload(model.theta);
  UnlearnOptions run_options = options;
  run_options.inverse.progress = progress;
  Outcome out;
  out.summary = lethe::Unlearn(*engine.train, forget, theta, run_options, kept_f32.get());
  out.theta = engine.Download(theta);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

py::tuple RunUnlearn(const PyModel& in, const py::object& train_arg, const py::object& forget_arg,
                     const py::object& progress_callback, const py::kwargs& kwargs) {
  CommandOptions o = ParseOptions("unlearn", kwargs);
  UnlearnOptions options = o.unlearn;
  options.method = ParseUnlearnMethod(o.method);
  options.solve_precision = ParseSolvePrecision(o.solve_dtype);
  const bool f32 = o.common.F32();
  if (f32 && options.solve_precision == SolvePrecision::kF64)
    Fail("--solve-dtype f64 needs --dtype f64 (the solve cannot be finer than the compute precision)");
  o.common.Backend();
  const std::vector<int64_t> forget_ids = forget_arg.cast<std::vector<int64_t>>();
  if (forget_ids.empty()) Fail("forget_ids: empty forget set");
  const Model& model = in.model;
  if (model.certified)
    Fail(in.name, ": trained with --certified, its objective holds the secret term bᵀθ: "
         "remove with lethe unlearn --certified --b FILE");
  cli::Warnings warnings("unlearn", /*print=*/false);
  std::string note;
  const auto train = ExcludeForgotten(model.forgotten, AsData(train_arg, o.common), "unlearn",
                                      in.name, &note);
  CheckDataMatchesModel(model.arch, train->meta());
  // cmd_unlearn.cc's checks on the request, in its words.
  const std::string what = "forget_ids";
  std::vector<int64_t> new_ids, already;
  for (int64_t id : forget_ids) (model.forgotten.Contains(id) ? already : new_ids).push_back(id);
  if (!already.empty()) {
    std::string list;
    for (size_t i = 0; i < already.size() && i < 10; ++i)
      list += (i ? ", " : "") + std::to_string(already[i]);
    if (already.size() > 10) list += ", …";
    if (new_ids.empty())
      Fail(what, ": every id in this request (", list, ") was already forgotten by ", in.name,
           "; nothing to do");
    warnings.Add(std::to_string(already.size()) + " id(s) of " + what + " (" + list +
                 ") were already forgotten by " + in.name + ": skipped");
  }
  const std::vector<int64_t> forget_rows = train->meta().RowsOf(new_ids, what);
  const int64_t n = train->meta().n;
  if (static_cast<int64_t>(forget_rows.size()) >= n)
    Fail(what, ": forgets every example; nothing would be left");
  if (2 * static_cast<int64_t>(forget_rows.size()) > n)
    warnings.Add("forgetting more than half of the data; a Newton patch is a local "
                 "approximation, consider retraining");
  if (o.solver.solver == "auto") o.solver.solver = "cg";
  options.inverse = o.solver.Resolve(model.arch.num_params);
  options.adaptive_cg_tolerance = o.vm["cg-tolerance"].defaulted();
  options.Validate();

  PythonProgress progress(progress_callback);
  const Outcome r = WithoutGil([&] {
    return f32 ? Run<float>(model, *train, forget_rows, options, o.common, &progress)
               : Run<double>(model, *train, forget_rows, options, o.common, &progress);
  });
  const UnlearnSummary& s = r.summary;
  if (!(s.input_grad_norm <= cli::kStationarityTolerance))
    warnings.Add("the model is not at a stationary point of its objective on " + train->meta().path +
                 (model.forgotten.ids.empty() ? "" : " without the ids it had forgotten") +
                 " (‖∇L‖ = " + cli::Sci(s.input_grad_norm) + " > " +
                 cli::Sci(cli::kStationarityTolerance, 0) +
                 "): the patch also finishes its training, so its distance to retraining mixes "
                 "both; lethe.train(model, data) finishes training first (docs/formats.md)");
  if (!s.ok) Fail("unlearning failed, nothing written: ", s.message);

  auto patched = std::make_shared<PyModel>(PyModel{model, in.name + " (patched)", ""});
  patched->model.theta = r.theta;
  patched->model.dp.reset();  // the patch reads the kept data outside any DP mechanism
  std::vector<int64_t> removed;
  for (int64_t row : forget_rows) removed.push_back(train->meta().ids[row]);
  std::sort(removed.begin(), removed.end());
  patched->model.forgotten.Add(removed, {s.method, in.sha256, IdsSha256(removed),
                                         static_cast<int64_t>(removed.size()), UtcNow()});

  // The erasure record: cmd_unlearn.cc's fields.
  nlohmann::json report;
  report["lethe_version"] = LETHE_VERSION;
  report["utc"] = patched->model.forgotten.requests.back().utc;
  report["input_model"] = {{"name", in.name}, {"sha256", in.sha256}};
  report["forget_list"] = {{"ids_sha256", IdsSha256(forget_ids)}};
  report["previously_forgotten"] = {{"ids", static_cast<int64_t>(model.forgotten.ids.size())},
                                    {"requests", static_cast<int64_t>(model.forgotten.requests.size())},
                                    {"in_this_request", already}};
  cli::AddFixedTensors(model.arch, report);
  report["n"] = n;
  report["k"] = static_cast<int64_t>(forget_rows.size());
  report["forget_ids"] = removed;
  cli::AddPatchFields(options, s, report);
  report["input_grad_norm"] = s.input_grad_norm;
  report["seconds"] = r.seconds;
  report["dtype"] = o.common.dtype;
  report["warnings"] = warnings.all();
  if (!note.empty()) report["notes"] = nlohmann::json::array({note});
  return py::make_tuple(patched, ToPython(report));
}

}  // namespace

void BindUnlearn(py::module_& m) {
  m.def("unlearn", &RunUnlearn, py::arg("model"), py::arg("train"), py::arg("forget_ids"),
        py::kw_only(), py::arg("progress") = py::none());
}

}  // namespace lethe::py_module
