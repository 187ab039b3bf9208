// Gradient and Hessian-vector product of any lethe model on any data set, f64 and f32, next
// to the backend's GEMM rate: the engine timed directly, without the CLI's start-up and file
// reading. bench/compare/cnn_vs_torch.py writes a model and data and runs this beside
// PyTorch on the same files and threads.
//
//   ./build/bench/lethe_bench_model [--benchmark flags] NAME=MODEL.safetensors,DATA.npz ...
//
// Per model and dtype:
//   Gradient   ValueAndGradient over all n examples (forward and backward pass).
//   HvpCold    one Hessian-vector product from scratch (the forward-pass cache off:
//              forward, backward, R-forward, R-backward), what a double backward costs.
//   HvpCached  one product at a θ seen before (the forward pass and δ kept: the product CG
//              takes on every iteration after its first), as PyTorch with the gradient
//              graph built once (create_graph) and reused.
// v = θ (any fixed direction will do: the cost does not depend on it). GEMM: an m × k by
// k × n product at a reference shape, the ceiling the products above are measured against.
// Threads: OMP_NUM_THREADS (the backend's default). Times: wall ("real_time") and the
// process's CPU time over all threads ("cpu_time"), the steadier measure on a shared machine.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/objective.h"
#include "io/dataset.h"
#include "kernels/backend.h"

namespace lethe {
namespace {

template <typename T>
struct Problem {
  std::unique_ptr<kernels::Backend<T>> backend;
  std::unique_ptr<Objective<T>> objective;
  kernels::Matrix<T> theta, out;
  Problem(const Model& model, const io::Dataset& data, int64_t cache_elements) {
    backend = kernels::MakeBackend<T>({});
    ObjectiveOptions options;
    options.cache_elements = cache_elements;
    objective = std::make_unique<Objective<T>>(*backend, model.arch, UploadData(*backend, data),
                                               options);
    std::vector<T> host(model.theta.begin(), model.theta.end());
    theta = backend->Allocate(1, model.arch.num_params);
    backend->Upload(host.data(), theta);
    out = backend->Allocate(1, model.arch.num_params);
  }
};

template <typename T>
void Gradient(benchmark::State& state, const Model* model, const io::Dataset* data) {
  Problem<T> p(*model, *data, ObjectiveOptions{}.cache_elements);
  for (auto _ : state) benchmark::DoNotOptimize(p.objective->ValueAndGradient(p.theta, p.out));
}

template <typename T>
void Hvp(benchmark::State& state, const Model* model, const io::Dataset* data, bool cached) {
  Problem<T> p(*model, *data, cached ? ObjectiveOptions{}.cache_elements : 0);
  if (cached) p.objective->CurvatureProduct(Curvature::kHessian, p.theta, p.theta, p.out);
  for (auto _ : state) p.objective->CurvatureProduct(Curvature::kHessian, p.theta, p.theta, p.out);
}

template <typename T>
void Gemm(benchmark::State& state) {
  auto backend = kernels::MakeBackend<T>({});
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  auto A = backend->Zeros(m, k), B = backend->Zeros(n, k), C = backend->Zeros(m, n);
  for (auto _ : state) backend->Gemm(kernels::Op::kNone, kernels::Op::kTranspose, T(1), A, B, T(0), C);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

template <typename T>
void Register(const std::string& name, const char* dtype, const Model* model,
              const io::Dataset* data) {
  const std::string prefix = name + "/" + dtype + "/";
  for (auto* b :
       {benchmark::RegisterBenchmark((prefix + "Gradient").c_str(), Gradient<T>, model, data),
        benchmark::RegisterBenchmark((prefix + "HvpCold").c_str(), Hvp<T>, model, data, false),
        benchmark::RegisterBenchmark((prefix + "HvpCached").c_str(), Hvp<T>, model, data, true)})
    b->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  using namespace lethe;
  // Kept alive for the benchmarks, which hold pointers to them.
  std::vector<std::unique_ptr<Model>> models;
  std::vector<std::unique_ptr<io::Dataset>> data;
  try {
    for (int a = 1; a < argc; ++a) {
      const std::string arg = argv[a];
      const size_t eq = arg.find('='), comma = arg.find(',', eq);
      if (eq == std::string::npos || comma == std::string::npos) {
        std::fprintf(stderr, "lethe_bench_model: %s: expected NAME=MODEL,DATA\n", argv[a]);
        return 1;
      }
      models.push_back(std::make_unique<Model>(LoadModel(arg.substr(eq + 1, comma - eq - 1))));
      data.push_back(std::make_unique<io::Dataset>(io::LoadDataset(arg.substr(comma + 1))));
      CheckDataMatchesModel(models.back()->arch, *data.back());
      const std::string name = arg.substr(0, eq);
      Register<double>(name, "f64", models.back().get(), data.back().get());
      Register<float>(name, "f32", models.back().get(), data.back().get());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lethe_bench_model: %s\n", e.what());
    return 1;
  }
  for (auto* b : {benchmark::RegisterBenchmark("GEMM/f64/1024x1024x1024", Gemm<double>),
                  benchmark::RegisterBenchmark("GEMM/f32/1024x1024x1024", Gemm<float>)})
    b->Args({1024, 1024, 1024})->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
