// lethe.Model and lethe.Data.
#include <pybind11/stl.h>

#include "common/error.h"
#include "io/sha256.h"
#include "python/src/bridge.h"

namespace lethe::py_module {
namespace {

// A torch module's tensors as the exporter lays them out (tools/export_torch.py,
// model_arrays): a safetensors file in memory, read by the engine's own loader.
std::shared_ptr<PyModel> FromArrays(const std::string& spec_json, const py::list& arrays,
                                    const std::string& name) {
  io::SafetensorsFile file;
  for (const py::handle item : arrays) {
    const auto pair = item.cast<py::tuple>();
    const std::string tensor = pair[0].cast<std::string>();
    py::array a = py::array::ensure(pair[1]);
    io::Array out;
    if (a.dtype().kind() == 'f' && a.itemsize() == 8)
      out.dtype = io::DType::kF64;
    else if (a.dtype().kind() == 'f' && a.itemsize() == 4)
      out.dtype = io::DType::kF32;
    else
      Fail(name, ": tensor ", tensor, ": dtype ", py::str(a.dtype()).cast<std::string>(),
           " is not float32 or float64");
    for (py::ssize_t i = 0; i < a.ndim(); ++i) out.shape.push_back(a.shape(i));
    // Parameters are small: their bytes are copied, as a file's would be read.
    py::array c = out.dtype == io::DType::kF64
                      ? py::array(py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a))
                      : py::array(py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a));
    const auto* bytes = static_cast<const uint8_t*>(c.data());
    out.bytes.assign(bytes, bytes + c.nbytes());
    file.tensors.emplace_back(tensor, std::move(out));
  }
  file.metadata["lethe"] = spec_json;
  return std::make_shared<PyModel>(PyModel{ModelFromSafetensors(file, name), name, ""});
}

// [(name, shape, trainable, values as float64)] in file order: what SaveModel writes.
py::list Tensors(const PyModel& m) {
  py::list out;
  const Architecture& arch = m.model.arch;
  arch.ForEachTensor([&](const LayerShape&, const TensorInfo& t) {
    const std::vector<double>& src = t.trainable ? m.model.theta : arch.constants;
    std::vector<double> values(src.begin() + t.offset, src.begin() + t.offset + t.size());
    std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
    out.append(py::make_tuple(t.name, py::tuple(py::cast(shape)), t.trainable,
                              ToNumpy(std::move(values), shape)));
  });
  return out;
}

}  // namespace

void BindModel(py::module_& m) {
  py::class_<PyModel, std::shared_ptr<PyModel>>(m, "Model")
      .def(py::init([](const std::string& path, std::optional<std::string> spec) {
             return std::make_shared<PyModel>(PyModel{LoadModel(path, spec), path, io::Sha256File(path)});
           }),
           py::arg("path"), py::arg("spec") = py::none())
      .def_static("_from_arrays", &FromArrays, py::arg("spec_json"), py::arg("arrays"),
                  py::arg("name") = "<torch module>")
      .def("save", [](const PyModel& self, const std::string& path) { SaveModel(path, self.model); },
           py::arg("path"))
      .def_property_readonly("name", [](const PyModel& self) { return self.name; })
      .def_property_readonly("num_params", [](const PyModel& self) { return self.model.arch.num_params; })
      .def_property_readonly("dtype", [](const PyModel& self) {
        return self.model.dtype == io::DType::kF32 ? "f32" : "f64";
      })
      .def_property_readonly("spec_json", [](const PyModel& self) { return self.model.arch.spec.ToJson(); })
      .def_property_readonly("theta", [](const PyModel& self) {
        std::vector<double> t = self.model.theta;
        return ToNumpy(std::move(t), {static_cast<py::ssize_t>(self.model.theta.size())});
      })
      .def_property_readonly("sha256", [](const PyModel& self) { return self.sha256; })
      .def_property_readonly("forgotten_ids", [](const PyModel& self) { return self.model.forgotten.ids; })
      .def("_tensors", &Tensors);
}

void BindData(py::module_& m) {
  py::class_<Data, std::shared_ptr<Data>>(m, "Data")
      .def(py::init(&Data::FromArrays), py::arg("X"), py::arg("y"), py::arg("ids") = py::none(),
           py::arg("name") = "data")
      .def_static("from_file",
                  [](const std::string& path, const std::string& label_column, const std::string& id_column) {
                    return Data::FromFile(path, {label_column, id_column});
                  },
                  py::arg("path"), py::arg("label_column") = "label", py::arg("id_column") = "")
      .def_property_readonly("n", [](const Data& d) { return d.meta().n; })
      .def_property_readonly("d", [](const Data& d) { return d.meta().d; })
      .def_property_readonly("name", [](const Data& d) { return d.meta().path; })
      .def_property_readonly("ids", [](const Data& d) { return d.meta().ids; })
      .def_property_readonly("zero_copy", &Data::zero_copy)
      .def_property_readonly("_x_address", &Data::x_address);
}

}  // namespace lethe::py_module
