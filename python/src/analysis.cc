// evaluate, influence, self_influence: the engine calls of lethe eval, influence and
// self-influence (tools/lethe/cmd_eval.cc, cmd_influence.cc) with the same options, in the
// same order, so the numbers are the CLI's.
#include <pybind11/stl.h>

#include <numeric>

#include "engine/influence.h"
#include "io/dataset.h"
#include "python/src/bridge.h"
#include "python/src/options.h"
#include "python/src/progress.h"

namespace lethe::py_module {
namespace {

template <typename T>
nlohmann::json Evaluate(const Model& model, const Data& data, const cli::CommonOptions& common) {
  Engine<T> engine(model, data, common);
  const Metrics m = engine.train->Evaluate(engine.theta);
  const double grad_norm = engine.GradNorm();
  nlohmann::json j;  // cmd_eval.cc's --json
  j["n"] = m.n;
  j["loss"] = m.loss;
  j["objective"] = m.objective;
  if (model.arch.spec.loss != LossKind::kMse) j["accuracy"] = m.accuracy;
  j["grad_norm"] = grad_norm;
  j["stationary"] = grad_norm <= cli::kStationarityTolerance;
  j["forgotten"] = static_cast<int64_t>(model.forgotten.ids.size());
  return j;
}

py::object RunEvaluate(const PyModel& model, const py::object& data_arg, const py::kwargs& kwargs) {
  const CommandOptions o = ParseOptions("evaluate", kwargs);
  const auto data = AsData(data_arg, o.common);
  CheckDataMatchesModel(model.model.arch, data->meta());
  const bool f32 = o.common.F32();
  const nlohmann::json j = WithoutGil([&] {
    return f32 ? Evaluate<float>(model.model, *data, o.common)
               : Evaluate<double>(model.model, *data, o.common);
  });
  return ToPython(j);
}

// What influence and self-influence share (cmd_influence.cc's Prepare and ResultJson).
struct Result {
  InfluenceResult r;
  InverseHvpOptions options;
  double grad_norm = 0;
  bool exact = true;
};

nlohmann::json ResultJson(const Result& res, const PyModel& model, const cli::CommonOptions& common,
                          const cli::Warnings& warnings) {
  return cli::ScoresProvenanceJson(res.options, model.model, common, res.r.summary, res.exact,
                                   res.grad_norm, warnings);
}

template <typename T>
Result Influence(const Model& model, const Data& train, const Data& test,
                 const std::vector<int64_t>& test_rows, const CommandOptions& o,
                 const std::string& model_name, ProgressSink* progress, cli::Warnings& warnings,
                 bool self) {
  Engine<T> engine(model, train, o.common);
  std::unique_ptr<Objective<T>> tests;
  if (!self)
    tests = std::make_unique<Objective<T>>(*engine.backend, model.arch,
                                           test.Upload(*engine.backend, test_rows),
                                           ObjectiveOptions{o.common.batch_size});
  Result res;
  res.options = o.solver.Resolve(model.arch.num_params);
  res.grad_norm = engine.GradNorm();
  if (!(res.grad_norm <= cli::kStationarityTolerance))
    warnings.Add(cli::StationarityWarning(
        res.grad_norm, train.meta().path, model_name,
        std::string(self ? "self-influence scores" : "influence scores") +
            " are first-order effects at a minimiser, so here they describe a nearby optimum "
            "rather than this model"));
  res.options.progress = progress;
  InverseHvp<T> inverse(*engine.train, engine.theta, res.options);
  if (self) {
    const int64_t block = res.options.solver == SolverKind::kDirect ? 256 : 64;
    const int64_t n = train.meta().n;
    res.r = SelfInfluence(*engine.train, engine.theta, inverse, block, [&](int64_t done) {
      progress->Report("self-influence examples", done, n);
    });
  } else {
    res.r = InfluenceOnTests(*engine.train, *tests, engine.theta, inverse);
  }
  res.exact = cli::CheckConverged(res.r.summary, o.solver.allow_inexact, warnings);
  return res;
}

std::vector<int64_t> AllRows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

py::object RunInfluence(const PyModel& model, const py::object& train_arg, const py::object& test_arg,
                        const py::object& test_ids, const py::object& progress_callback,
                        bool self, const py::object& ids, const py::kwargs& kwargs) {
  const char* command = self ? "self-influence" : "influence";
  const CommandOptions o = ParseOptions(self ? "self_influence" : "influence", kwargs);
  const bool f32 = o.common.F32();
  o.common.Backend();
  cli::Warnings warnings(command, /*print=*/false);
  std::string note;
  const auto train = ExcludeForgotten(model.model.forgotten, AsData(train_arg, o.common), command,
                                      model.name, &note);
  std::shared_ptr<Data> test;
  if (!self) test = AsData(test_arg, o.common);
  CheckDataMatchesModel(model.model.arch, train->meta());
  if (test) CheckDataMatchesModel(model.model.arch, test->meta());
  std::vector<int64_t> rows;  // test rows (influence) or the training rows returned (self)
  if (!self)
    rows = test_ids.is_none() ? AllRows(test->meta().n)
                              : test->meta().RowsOf(test_ids.cast<std::vector<int64_t>>(), "test_ids");
  else if (!ids.is_none())
    rows = train->meta().RowsOf(ids.cast<std::vector<int64_t>>(), "ids");
  PythonProgress progress(progress_callback);
  Result res = WithoutGil([&] {
    return f32 ? Influence<float>(model.model, *train, test ? *test : *train, rows, o, model.name,
                                  &progress, warnings, self)
               : Influence<double>(model.model, *train, test ? *test : *train, rows, o, model.name,
                                   &progress, warnings, self);
  });
  nlohmann::json j = ResultJson(res, model, o.common, warnings);
  if (!note.empty()) j["notes"] = nlohmann::json::array({note});
  py::dict out = ToPython(j);
  const auto& train_ids = train->meta().ids;
  if (self) {
    if (rows.empty()) rows = AllRows(train->meta().n);
    std::vector<double> scores;
    std::vector<int64_t> chosen_ids;
    for (int64_t i : rows) scores.push_back(res.r.scores[i]), chosen_ids.push_back(train_ids[i]);
    const auto count = static_cast<py::ssize_t>(scores.size());
    out["scores"] = ToNumpy(std::move(scores), {count});
    out["train_ids"] = py::array(py::cast(chosen_ids));
  } else {
    std::vector<int64_t> chosen_ids;
    for (int64_t r : rows) chosen_ids.push_back(test->meta().ids[r]);
    out["scores"] = ToNumpy(std::move(res.r.scores), {res.r.m, res.r.n});
    out["train_ids"] = py::array(py::cast(train_ids));
    out["test_ids"] = py::array(py::cast(chosen_ids));
  }
  return out;
}

}  // namespace

void BindAnalysis(py::module_& m) {
  m.def("evaluate", &RunEvaluate, py::arg("model"), py::arg("data"));
  m.def("influence",
        [](const PyModel& model, const py::object& train, const py::object& test,
           const py::object& test_ids, const py::object& progress, const py::kwargs& kwargs) {
          return RunInfluence(model, train, test, test_ids, progress, false, py::none(), kwargs);
        },
        py::arg("model"), py::arg("train"), py::arg("test"), py::kw_only(),
        py::arg("test_ids") = py::none(), py::arg("progress") = py::none());
  m.def("self_influence",
        [](const PyModel& model, const py::object& train, const py::object& ids,
           const py::object& progress, const py::kwargs& kwargs) {
          return RunInfluence(model, train, py::none(), py::none(), progress, true, ids, kwargs);
        },
        py::arg("model"), py::arg("train"), py::kw_only(), py::arg("ids") = py::none(),
        py::arg("progress") = py::none());
}

}  // namespace lethe::py_module
