// What the module's functions share: the Model object, data arguments, a model and its data
// on a backend (the CLI's Session, over the module's data), JSON → Python.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "engine/objective.h"
#include "python/src/data.h"
#include "tools/lethe/session.h"

namespace lethe::py_module {

namespace py = pybind11;

// lethe.Model: a model as the engine holds it, and the name messages give it (its path, or
// "<torch module>").
struct PyModel {
  Model model;
  std::string name;
  std::string sha256;  // of the file it was read from, when it was ("": built in memory)
};

// A data argument: a lethe Data object, or a path (str / os.PathLike) read as the CLI reads
// it (.npz, .csv with the common options' label and id columns).
std::shared_ptr<Data> AsData(const py::object& value, const cli::CommonOptions& common);

// A nlohmann::json value as Python objects (dict, list, float, ...).
py::object ToPython(const nlohmann::json& j);

// A vector moved into a numpy array of `shape` without a copy.
py::array_t<double> ToNumpy(std::vector<double>&& values, std::vector<py::ssize_t> shape);

// The model's training data and θ on a backend, as cli::Session (tools/lethe/session.h).
template <typename T>
struct Engine {
  std::unique_ptr<kernels::Backend<T>> backend;
  std::unique_ptr<Objective<T>> train;
  kernels::Matrix<T> theta;

  Engine(const Model& model, const Data& data, const cli::CommonOptions& common,
         const std::vector<int64_t>& rows = {}) {
    backend = kernels::MakeBackend<T>(common.Backend());
    train = std::make_unique<Objective<T>>(*backend, model.arch, data.Upload(*backend, rows),
                                           ObjectiveOptions{common.batch_size});
    theta = Upload(model.theta);
  }
  kernels::Matrix<T> Upload(const std::vector<double>& values) {
    std::vector<T> host(values.begin(), values.end());
    kernels::Matrix<T> m = backend->Allocate(1, static_cast<int64_t>(values.size()));
    backend->Upload(host.data(), m);
    return m;
  }
  std::vector<double> Download(const kernels::Matrix<T>& m) {
    std::vector<T> host(m.size());
    backend->Download(m, host.data());
    return std::vector<double>(host.begin(), host.end());
  }
  // ‖∇L(θ)‖ of the training objective, with cli::CheckStationary's warning.
  double GradNorm() {
    kernels::Matrix<T> grad = backend->Allocate(1, train->num_params());
    train->ValueAndGradient(theta, grad);
    return static_cast<double>(kernels::Norm(*backend, grad));
  }
};

void BindModel(py::module_& m);
void BindData(py::module_& m);
void BindAnalysis(py::module_& m);  // evaluate, influence, self_influence
void BindUnlearn(py::module_& m);
void BindTrain(py::module_& m);
void BindCompare(py::module_& m);

}  // namespace lethe::py_module
