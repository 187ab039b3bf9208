// compare: lethe compare's engine calls (tools/lethe/cmd_compare.cc) and its --json.
// The audit (engine/audit.h) takes whole io::Datasets, so here, unlike every other
// function, the data are copied into one (docs/python.md).
#include <pybind11/stl.h>

#include <algorithm>

#include "engine/audit.h"
#include "python/src/bridge.h"
#include "python/src/options.h"
#include "python/src/progress.h"
#include "tools/lethe/comparison.h"
#include "tools/lethe/forgotten_data.h"

namespace lethe::py_module {
namespace {

py::object RunCompare(const PyModel& a, const PyModel& b, const py::object& train_arg,
                      const py::object& test_arg, const py::object& forget_arg,
                      const py::object& original_arg, const py::kwargs& kwargs) {
  const CommandOptions o = ParseOptions("compare", kwargs);
  const bool f32 = o.common.F32();
  o.common.Backend();
  std::vector<std::pair<std::string, const PyModel*>> models = {{"reference", &b}, {"model", &a}};
  std::shared_ptr<PyModel> original_model;
  if (!original_arg.is_none()) {
    original_model = original_arg.cast<std::shared_ptr<PyModel>>();
    models.push_back({"original", original_model.get()});
  }
  const Model& first = models[0].second->model;
  for (const auto& [unused, m] : models)
    if (m->model.arch.num_params != first.arch.num_params ||
        m->model.arch.spec.ToJson() != first.arch.spec.ToJson())
      Fail(a.name, " and ", b.name, ": the models have different architectures");
  std::vector<const ForgetHistory*> histories;
  for (const auto& entry : models) histories.push_back(&entry.second->model.forgotten);
  const ForgetHistory forgotten = cli::UnionOfForgotten(histories);
  std::vector<int64_t> forget_ids;
  std::string forget_what;
  if (!forget_arg.is_none()) {
    forget_ids = forget_arg.cast<std::vector<int64_t>>();
    forget_what = "forget_ids";
  }
  std::vector<std::string> notes;
  auto train_data = AsData(train_arg, o.common);
  if (!forgotten.ids.empty()) {
    ForgetHistory excluded;
    std::vector<int64_t> given = forget_ids;
    std::sort(given.begin(), given.end());
    std::vector<int64_t> rest;
    for (int64_t id : forgotten.ids)
      if (!std::binary_search(given.begin(), given.end(), id)) rest.push_back(id);
    const auto& ids = train_data->meta().ids;
    if (forget_ids.empty())
      for (int64_t i = 0; i < train_data->meta().n; ++i)
        if (forgotten.Contains(ids[i])) forget_ids.push_back(ids[i]);
    if (forget_what.empty() && !forget_ids.empty()) {
      forget_what = "the models' forgotten ids";
      notes.push_back("compare: note: no forget_ids given: the forget set is the " +
                      std::to_string(forget_ids.size()) + " id(s) of " + train_data->meta().path +
                      " that the models have forgotten");
    }
    if (!rest.empty() && !given.empty()) {
      excluded.Add(rest, {});
      std::string note;
      train_data = ExcludeForgotten(excluded, train_data, "compare", "a compared model", &note);
      if (!note.empty()) notes.push_back(note);
    }
  }
  const auto test_data = AsData(test_arg, o.common);
  CheckDataMatchesModel(first.arch, train_data->meta());
  CheckDataMatchesModel(first.arch, test_data->meta());
  std::vector<int64_t> forget_rows;
  if (!forget_ids.empty()) forget_rows = train_data->meta().RowsOf(forget_ids, forget_what);
  const io::Dataset train = train_data->Materialize(), test = test_data->Materialize();

  PythonProgress progress{py::none()};
  std::vector<cli::ModelRow> rows = WithoutGil([&] {
    std::vector<cli::ModelRow> rows;
    for (const auto& [name, m] : models) {
      cli::ModelRow r{name, m->model.theta, {}, -1};
      if (f32) {
        auto be = kernels::MakeBackend<float>(o.common.Backend());
        r.audit = AuditModel<float>(*be, m->model.arch, r.theta, train, forget_rows, test, o.common.batch_size);
      } else {
        auto be = kernels::MakeBackend<double>(o.common.Backend());
        r.audit = AuditModel<double>(*be, m->model.arch, r.theta, train, forget_rows, test, o.common.batch_size);
      }
      progress.Check();  // Ctrl-C between models
      rows.push_back(std::move(r));
    }
    return rows;
  });
  std::vector<cli::ModelRow> ordered;
  if (rows.size() == 3) ordered.push_back(rows[2]);
  ordered.push_back(rows[1]);
  ordered.push_back(rows[0]);
  const int reference = static_cast<int>(ordered.size()) - 1, original = rows.size() == 3 ? 0 : -1;
  nlohmann::json j = cli::ComparisonJson(ordered, reference, original);
  j["parameter_distance"] = Distance(rows[1].theta, rows[0].theta);
  if (original >= 0)
    j["relative_parameter_distance"] =
        Distance(rows[1].theta, rows[0].theta) / Distance(rows[2].theta, rows[0].theta);
  j["test_agreement"] = PredictionAgreement(rows[1].audit, rows[0].audit);
  if (!notes.empty()) j["notes"] = notes;
  return ToPython(j);
}

}  // namespace

void BindCompare(py::module_& m) {
  m.def("compare", &RunCompare, py::arg("model"), py::arg("reference"), py::arg("train"),
        py::arg("test"), py::kw_only(), py::arg("forget_ids") = py::none(),
        py::arg("original") = py::none());
}

}  // namespace lethe::py_module
