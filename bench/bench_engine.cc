// Engine throughput: gradient, per-example gradients and Hessian-vector products of a
// 784-256-10 MLP (batch 1024) and a 10,000 × 784 softmax regression, next to the GEMM
// rate of the same backend on the same machine (the ceiling these products can reach).
//
// GFLOP/s counts only matrix-product flops (2·m·n·k each), computed from the layer
// shapes below; elementwise work is not counted, so the ratio to GEMM is honest.
//   ./build/bench/lethe_bench_engine --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>


#include "bench/bench_problems.h"
#include "engine/dense_curvature.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "kernels/backend.h"

namespace lethe {
namespace {

using Backend = kernels::Backend<double>;
using bench::Flops;
using bench::Pass;
using bench::Spec;
using bench::Synthetic;

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

// The direct solver's pieces on the softmax regression (n × 784 → 10, p = 7,850): forming
// H from its weighted Gram blocks (cross-entropy: C(C−1)/2 = 45 of them, n·784·785 flops
// each, counted as SYRK flops: the triangle the backend computes), one such block alone
// (WeightedGram, against the GEMM rate above), and the Cholesky factorisation of the formed
// H (p³/3 flops).
void BM_WeightedGram(benchmark::State& state) {
  auto backend = kernels::MakeBackend<double>({});
  const int64_t n = state.range(0), k = state.range(1);
  const io::Dataset data = Synthetic(n, k, 10);
  auto X = backend->Allocate(n, k), w = backend->Allocate(n, 1), out = backend->Allocate(k, k);
  backend->Upload(data.X.data(), X);
  backend->Fill(w, state.range(2) ? 0.5 : -0.5);
  for (auto _ : state) backend->WeightedGram(1.0, X, w, 0.0, out);
  Report(state, 1.0 * n * k * (k + 1));
}
BENCHMARK(BM_WeightedGram)
    ->Args({10000, 785, 1})
    ->Args({10000, 785, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_DenseCurvature(benchmark::State& state, int64_t n) {
  Problem p = Make(n, {});
  const int64_t P = p.model.arch.num_params;
  auto H = p.backend->Allocate(P, P);
  for (auto _ : state) DenseCurvature(*p.objective, Curvature::kHessian, p.theta, 0.0, H);
  Report(state, 45.0 * n * 784 * 785);
}
BENCHMARK_CAPTURE(BM_DenseCurvature, softmax_10000x784, 10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(2);

void BM_Cholesky(benchmark::State& state, int64_t n) {
  Problem p = Make(n, {});
  const int64_t P = p.model.arch.num_params;
  auto H = p.backend->Allocate(P, P), A = p.backend->Allocate(P, P);
  DenseCurvature(*p.objective, Curvature::kHessian, p.theta, 0.0, H);
  for (auto _ : state) {
    state.PauseTiming();
    p.backend->Copy(H, A);
    state.ResumeTiming();
    benchmark::DoNotOptimize(p.backend->CholeskyFactor(A));
  }
  Report(state, double(P) * P * P / 3);
}
BENCHMARK_CAPTURE(BM_Cholesky, softmax_10000x784, 10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(2);

}  // namespace
}  // namespace lethe

BENCHMARK_MAIN();
