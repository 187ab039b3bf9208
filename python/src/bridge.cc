#include "python/src/bridge.h"

namespace lethe::py_module {

std::shared_ptr<Data> AsData(const py::object& value, const cli::CommonOptions& common) {
  if (py::isinstance<Data>(value)) return value.cast<std::shared_ptr<Data>>();
  const py::object os = py::module_::import("os");
  if (py::isinstance<py::str>(value) || py::isinstance(value, os.attr("PathLike")))
    return Data::FromFile(py::str(os.attr("fspath")(value)).cast<std::string>(), common.Data());
  throw py::type_error("data must be lethe.Data, (X, y[, ids]) or a path to an .npz or .csv file");
}

py::object ToPython(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

py::array_t<double> ToNumpy(std::vector<double>&& values, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<double>(std::move(values));
  py::capsule free(owned, [](void* p) { delete static_cast<std::vector<double>*>(p); });
  return py::array_t<double>(shape, owned->data(), free);
}

}  // namespace lethe::py_module
