// lethe_derivatives: a TEST-ONLY tool (built with the tests, never installed, not a lethe
// command) that writes every derivative the engine computes for a model on a data set, so
// that tests/python/test_layer_parity.py can compare them with PyTorch's autograd.
//
//   lethe_derivatives --model M.safetensors --data D.npz --out DIR
//                     [--spec S.json] [--v V.npy] [--device cpu|cuda] [--batch-size B]
//
// The model and data are loaded as every lethe command loads them (LoadModel, LoadDataset,
// CheckDataMatchesModel) and evaluated in f64 on the chosen backend. DIR receives .npy files:
//   theta.npy        [p]      θ as the engine orders it (docs/formats.md, "Parameter order")
//   objective.npy    [1]      L(θ) = (1/n) Σ lᵢ + (l2/2)‖θ‖²
//   losses.npy       [n]      lᵢ(θ)
//   outputs.npy      [n, k]   f(xᵢ; θ)
//   grad.npy         [p]      ∇L(θ)
//   per_example.npy  [n, p]   ∇_θ lᵢ (no 1/n, no l2)
// and with --v V.npy ([p] or [m, p], float64, each row a direction v):
//   hv.npy           [m, p]   H v, H = ∇²L
//   gv.npy           [m, p]   G v, G = (1/n) Σ Jᵢᵀ ∇²_f lᵢ Jᵢ + l2·I
//   dots.npy         [n, m]   ∇_θ lᵢᵀ v (PerExampleGradientDots: never forms n × p)
// Errors: one line "lethe_derivatives: MESSAGE" on stderr, exit 1, nothing written.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "io/dataset.h"
#include "io/npy.h"
#include "kernels/backend.h"

namespace lethe {
namespace {

using Matrix = kernels::Matrix<double>;

struct Args {
  std::string model, data, spec, v, out, device = "cpu";
  int64_t batch_size = 2048;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  std::map<std::string, std::string*> strings = {{"--model", &a.model}, {"--data", &a.data},
                                                 {"--spec", &a.spec},   {"--v", &a.v},
                                                 {"--out", &a.out},     {"--device", &a.device}};
  for (int i = 1; i < argc; i += 2) {
    const std::string key = argv[i];
    if (i + 1 >= argc) Fail(key, ": missing value");
    if (key == "--batch-size") {
      a.batch_size = std::atoll(argv[i + 1]);
      if (a.batch_size < 1) Fail("--batch-size must be >= 1");
    } else if (auto it = strings.find(key); it != strings.end()) {
      *it->second = argv[i + 1];
    } else {
      Fail("unknown option ", key);
    }
  }
  if (a.model.empty() || a.data.empty() || a.out.empty())
    Fail(
        "usage: lethe_derivatives --model M --data D --out DIR [--spec S] [--v V.npy] "
        "[--device cpu|cuda] [--batch-size B]");
  if (a.device != "cpu" && a.device != "cuda") Fail("--device ", a.device, ": cpu or cuda");
  return a;
}

std::vector<double> Download(kernels::Backend<double>& backend, const Matrix& m) {
  std::vector<double> host(m.size());
  backend.Download(m, host.data());
  return host;
}

Matrix Upload(kernels::Backend<double>& backend, const std::vector<double>& host, int64_t rows,
              int64_t cols) {
  Matrix m = backend.Allocate(rows, cols);
  backend.Upload(host.data(), m);
  return m;
}

int Run(const Args& a) {
  const Model model = LoadModel(a.model, a.spec.empty() ? std::nullopt : std::optional(a.spec));
  const io::Dataset data = io::LoadDataset(a.data);
  CheckDataMatchesModel(model.arch, data);
  const int64_t p = model.arch.num_params, n = data.n;
  // The directions, read (and checked) before anything is computed or written.
  std::vector<double> v;
  int64_t m = 0;
  if (!a.v.empty()) {
    const io::Array array = io::ReadNpy(a.v);
    if (array.shape.empty() || array.shape.size() > 2 || array.shape.back() != p)
      Fail(a.v, ": must be [p] or [m, p] with p = ", p);
    v = array.ToDouble(a.v);
    m = array.shape.size() == 1 ? 1 : array.shape[0];
    if (m < 1) Fail(a.v, ": no directions");
  }

  kernels::BackendOptions options;
  options.device = a.device == "cuda" ? kernels::DeviceKind::kCuda : kernels::DeviceKind::kCpu;
  auto backend = kernels::MakeBackend<double>(options);
  Objective<double> objective(*backend, model.arch, UploadData(*backend, data),
                              ObjectiveOptions{a.batch_size});
  const Matrix theta = Upload(*backend, model.theta, 1, p);

  std::map<std::string, io::Array> out;
  auto put = [&](const char* name, const std::vector<double>& values, std::vector<int64_t> shape) {
    out[name] = io::Array::FromDouble(values, std::move(shape), io::DType::kF64);
  };
  put("theta", model.theta, {p});
  Matrix grad = backend->Allocate(1, p);
  put("objective", {objective.ValueAndGradient(theta, grad)}, {1});
  put("grad", Download(*backend, grad), {p});
  Matrix losses = backend->Allocate(n, 1);
  objective.PerExampleLosses(theta, losses);
  put("losses", Download(*backend, losses), {n});
  const int64_t k = model.arch.output_dim;
  Matrix outputs = backend->Allocate(n, k);
  objective.Outputs(theta, outputs);
  put("outputs", Download(*backend, outputs), {n, k});
  Matrix per_example = backend->Allocate(n, p);
  objective.PerExampleGradients(theta, 0, n, per_example);
  put("per_example", Download(*backend, per_example), {n, p});
  if (m > 0) {
    const Matrix V = Upload(*backend, v, m, p);
    Matrix product = backend->Allocate(m, p);
    objective.CurvatureProduct(Curvature::kHessian, theta, V, product);
    put("hv", Download(*backend, product), {m, p});
    objective.CurvatureProduct(Curvature::kGaussNewton, theta, V, product);
    put("gv", Download(*backend, product), {m, p});
    Matrix dots = backend->Allocate(n, m);
    objective.PerExampleGradientDots(theta, V, dots);
    put("dots", Download(*backend, dots), {n, m});
  }
  std::filesystem::create_directories(a.out);
  for (const auto& [name, array] : out)
    io::WriteNpy((std::filesystem::path(a.out) / (name + ".npy")).string(), array);
  return 0;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  try {
    return lethe::Run(lethe::ParseArgs(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "lethe_derivatives: " << e.what() << "\n";
    return 1;
  }
}
