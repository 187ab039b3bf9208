// Engine throughput: gradient, per-example gradients and Hessian-vector products of a
// 784-256-10 MLP (batch 1024) and a 10,000 × 784 softmax regression, next to the GEMM
// rate of the same backend on the same machine (the ceiling these products can reach).
//
// GFLOP/s counts only matrix-product flops (2·m·n·k each), computed from the layer
// shapes below; elementwise work is not counted, so the ratio to GEMM is honest.
//   ./build/bench/lethe_bench_engine --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <random>

#include "engine/model.h"
#include "engine/objective.h"
#include "kernels/backend.h"

namespace lethe {
namespace {

using Backend = kernels::Backend<double>;

io::Dataset Synthetic(int64_t n, int64_t d, int64_t classes) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal;
  io::Dataset data;
  data.path = "synthetic";
  data.n = n, data.d = d;
  data.X.resize(n * d);
  for (double& x : data.X) x = normal(rng);
  for (int64_t i = 0; i < n; ++i) data.y.push_back(static_cast<double>(i % classes)), data.ids.push_back(i);
  return data;
}

io::ModelSpec Spec(const std::vector<int64_t>& hidden) {
  io::ModelSpec spec;
  spec.l2 = 1e-3;
  for (size_t i = 0; i < hidden.size(); ++i) {
    io::LayerSpec lin;
    lin.weight = std::to_string(2 * i) + ".weight";
    lin.bias = std::to_string(2 * i) + ".bias";
    lin.out = hidden[i];
    spec.layers.push_back(lin);
    io::LayerSpec act;
    act.type = io::LayerSpec::Type::kActivation;
    act.activation = Activation::kRelu;
    spec.layers.push_back(act);
  }
  io::LayerSpec last;
  last.weight = "out.weight";
  last.bias = "out.bias";
  spec.layers.push_back(last);
  return spec;
}

struct Problem {
  std::unique_ptr<Backend> backend;
  Model model;
  std::unique_ptr<Objective<double>> objective;
  kernels::Matrix<double> theta;
  int64_t n;
};

Problem Make(int64_t n, const std::vector<int64_t>& hidden) {
  Problem p;
  p.backend = kernels::MakeBackend<double>({});
  const io::Dataset data = Synthetic(n, 784, 10);
  p.model = InitializeModel(Spec(hidden), data, 0, io::DType::kF64);
  p.objective = std::make_unique<Objective<double>>(*p.backend, p.model.arch,
                                                    UploadData(*p.backend, data),
                                                    ObjectiveOptions{n});
  p.theta = p.backend->Allocate(1, p.model.arch.num_params);
  p.backend->Upload(p.model.theta.data(), p.theta);
  p.n = n;
  return p;
}

// Matrix-product flops of one pass, by kind.
enum class Pass { kGradient, kPerExample, kHvp };
double Flops(const Architecture& arch, int64_t n, Pass pass) {
  double total = 0;
  for (size_t l = 0; l < arch.layers.size(); ++l) {
    const LayerShape& s = arch.layers[l];
    if (!s.is_linear()) continue;
    const double f = 2.0 * n * s.in * s.out;
    const bool first = static_cast<int>(l) == arch.first_linear;
    switch (pass) {
      case Pass::kGradient:  // forward, ∇W = δᵀx, δ_in = δW
        total += f * (first ? 2 : 3);
        break;
      case Pass::kPerExample:  // forward, δ_in = δW (the outer products are not GEMMs)
        total += f * (first ? 1 : 2);
        break;
      case Pass::kHvp:  // forward, δW, R-forward (xVᵀ, R{x}Wᵀ), R-backward (R{δ}ᵀx, δᵀR{x}, R{δ}W, δV)
        total += f * (first ? 3 : 8);
        break;
    }
  }
  return total;
}

void Report(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iteration * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// The baseline: the backend's GEMM on the dominant shape (batch × 784 × 256).
void BM_Gemm(benchmark::State& state) {
  auto backend = kernels::MakeBackend<double>({});
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  auto A = backend->Zeros(m, k), B = backend->Zeros(n, k), C = backend->Zeros(m, n);
  for (auto _ : state) backend->Gemm(kernels::Op::kNone, kernels::Op::kTranspose, 1.0, A, B, 0.0, C);
  Report(state, 2.0 * m * n * k);
}
BENCHMARK(BM_Gemm)->Args({1024, 784, 256})->Args({10000, 784, 10})->Args({1024, 1024, 1024})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Gradient(benchmark::State& state, int64_t n, std::vector<int64_t> hidden) {
  Problem p = Make(n, hidden);
  auto g = p.backend->Allocate(1, p.model.arch.num_params);
  for (auto _ : state) benchmark::DoNotOptimize(p.objective->ValueAndGradient(p.theta, g));
  Report(state, Flops(p.model.arch, n, Pass::kGradient));
}
void BM_PerExampleGradients(benchmark::State& state, int64_t n, std::vector<int64_t> hidden) {
  Problem p = Make(n, hidden);
  auto G = p.backend->Allocate(n, p.model.arch.num_params);
  for (auto _ : state) p.objective->PerExampleGradients(p.theta, 0, n, G);
  Report(state, Flops(p.model.arch, n, Pass::kPerExample));
  state.counters["GB/s written"] = benchmark::Counter(
      8.0 * n * p.model.arch.num_params * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_Hvp(benchmark::State& state, int64_t n, std::vector<int64_t> hidden) {
  Problem p = Make(n, hidden);
  auto v = p.backend->Allocate(1, p.model.arch.num_params);
  auto hv = p.backend->Allocate(1, p.model.arch.num_params);
  p.backend->Upload(p.model.theta.data(), v);
  for (auto _ : state) p.objective->CurvatureProduct(Curvature::kHessian, p.theta, v, hv);
  Report(state, Flops(p.model.arch, n, Pass::kHvp));
}

BENCHMARK_CAPTURE(BM_Gradient, mlp_784_256_10_b1024, 1024, {256})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_PerExampleGradients, mlp_784_256_10_b1024, 1024, {256})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Hvp, mlp_784_256_10_b1024, 1024, {256})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Gradient, softmax_10000x784, 10000, {})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_PerExampleGradients, softmax_10000x784, 10000, {})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Hvp, softmax_10000x784, 10000, {})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace lethe

BENCHMARK_MAIN();
