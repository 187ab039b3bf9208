// GPU throughput of the engine's core products — the gradient and the Hessian-vector
// product — of CG solves, of scoring every training example against m = 10 directions
// (influence), and of the direct solver (forming H, cuSOLVER Cholesky), on the CUDA
// backend in f32 and f64, next to two ceilings
// measured in the same run on the same GPU: a cuBLAS GEMM of the model's dominant shape
// and a device-to-device copy. Then the same work on the CPU backend of the same machine,
// for the speedup.
//
// TFLOP/s counts matrix-product flops only (2·m·n·k per product, from the layer shapes, as
// bench/bench_engine.cc), so the ratio to the GEMM rate is honest. GB/s is a traffic
// model, not a measurement: each pass (forward, backward, and for the HVP R-forward and
// R-backward) reads its input boundary and writes its output boundary once per linear
// layer, i.e. n · (d + Σ widths) · sizeof(T) · 2 bytes per pass. That is what the passes
// touch, not what crosses the memory bus: where a batch is about L2's size (10000 × 784
// is 31 MB in f32, 63 MB in f64; the H200 has 60 MB), consecutive products reuse it, and
// the modelled rate can exceed the copy rate (it did for the softmax HVP in f64, 112%).
//
//   lethe_bench_gpu [--n 60000] [--batch 10000] [--repeats 5] [--cpu-repeats 1] [--no-cpu]
//   lethe_bench_gpu --device-only    (prints the GPU, or lethe's reason there is none)
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_problems.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "engine/solvers/cg.h"
#include "engine/solvers/direct.h"
#include "engine/solvers/linear_operator.h"
#include "kernels/backend.h"

namespace lethe {
namespace {

using bench::Flops;
using bench::Pass;
using bench::Spec;
using bench::Synthetic;

struct Options {
  int64_t n = 60000;      // examples (MNIST-sized)
  int64_t batch = 10000;  // examples per forward/backward pass
  int repeats = 5;        // timed repetitions on the GPU (after one warm-up)
  int cpu_repeats = 1;    // on the CPU (after one warm-up)
  bool cpu = true;
  bool device_only = false;  // print the GPU (or why there is none) and stop
};

// The traffic model of the header comment.
double Bytes(const Architecture& arch, int64_t n, Pass pass, size_t scalar) {
  double boundary = static_cast<double>(arch.input_dim);
  for (const LayerShape& s : arch.layers)
    if (s.type() == "linear") boundary += static_cast<double>(s.out_width());
  const int passes = pass == Pass::kGradient ? 2 : 4;
  return n * boundary * scalar * 2.0 * passes;
}

void Sync(bool gpu) {
  if (gpu && cudaDeviceSynchronize() != cudaSuccess) Fail("cudaDeviceSynchronize failed");
}

// Mean seconds per call over `repeats` calls, after one warm-up call.
template <typename F>
double Time(bool gpu, int repeats, F&& f) {
  f();
  Sync(gpu);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) f();
  Sync(gpu);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

template <typename T>
const char* PrecisionName() {
  return sizeof(T) == 4 ? "f32" : "f64";
}

// What the GPU sustains in this run: the ceilings the engine's rates are set against.
struct Ceilings {
  double gemm_flops = 0;  // FLOP/s of the model's dominant GEMM
  double copy_bytes = 0;  // bytes/s of a device-to-device copy (read + write)
};

template <typename T>
kernels::Matrix<T> Random(kernels::Backend<T>& be, int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1, 1);
  std::vector<T> host(rows * cols);
  for (T& x : host) x = static_cast<T>(uniform(rng));
  auto m = be.Allocate(rows, cols);
  be.Upload(host.data(), m);
  return m;
}

template <typename T>
Ceilings MeasureCeilings(kernels::Backend<T>& gpu, const Options& o) {
  Ceilings c;
  // The MLP's widest product: a batch of 1024-wide activations times a 1024 × 1024 weight.
  const int64_t m = o.batch, k = 1024, n = 1024;
  // Random operands: a GEMM on zeros runs faster than on real data (less switching power).
  auto A = Random(gpu, m, k, 1), W = Random(gpu, n, k, 2), C = gpu.Zeros(m, n);
  double s = Time(true, o.repeats * 4, [&] {
    gpu.Gemm(kernels::Op::kNone, kernels::Op::kTranspose, T(1), A, W, T(0), C);
  });
  c.gemm_flops = 2.0 * m * n * k / s;
  std::printf("  cuBLAS GEMM %lldx%lldx%lld %s: %.3f ms, %.1f TFLOP/s\n", (long long)m,
              (long long)n, (long long)k, PrecisionName<T>(), s * 1e3, c.gemm_flops * 1e-12);
  const int64_t elements = (int64_t(1) << 30) / sizeof(T);  // 1 GiB
  auto src = gpu.Zeros(1, elements), dst = gpu.Allocate(1, elements);
  s = Time(true, o.repeats * 4, [&] { gpu.Copy(src, dst); });
  c.copy_bytes = 2.0 * elements * sizeof(T) / s;
  std::printf("  device-to-device copy of 1 GiB: %.3f ms, %.0f GB/s (read + write)\n", s * 1e3,
              c.copy_bytes * 1e-9);
  return c;
}

// One model on one backend: its objective, θ and a direction v.
template <typename T>
struct Problem {
  std::unique_ptr<Objective<T>> objective;
  kernels::Matrix<T> theta, v, out;
};

template <typename T>
Problem<T> MakeProblem(kernels::Backend<T>& be, const Model& model, const io::Dataset& data,
                       int64_t batch) {
  Problem<T> p;
  p.objective =
      std::make_unique<Objective<T>>(be, model.arch, UploadData(be, data), ObjectiveOptions{batch});
  const std::vector<T> theta(model.theta.begin(), model.theta.end());
  p.theta = be.Allocate(1, model.arch.num_params);
  be.Upload(theta.data(), p.theta);
  p.v = be.Allocate(1, model.arch.num_params);
  be.Upload(theta.data(), p.v);  // any fixed direction will do
  p.out = be.Allocate(1, model.arch.num_params);
  return p;
}

struct Timing {
  double gradient = 0, hvp = 0;
};

template <typename T>
Timing TimeProducts(Problem<T>& p, bool gpu, int repeats) {
  Timing t;
  t.gradient = Time(gpu, repeats, [&] { p.objective->ValueAndGradient(p.theta, p.out); });
  t.hvp = Time(gpu, repeats,
               [&] { p.objective->CurvatureProduct(Curvature::kHessian, p.theta, p.v, p.out); });
  return t;
}

void ReportRate(const char* what, double seconds, double flops, double bytes,
                const Ceilings& ceilings) {
  std::printf("    %-9s %9.3f ms  %7.2f TFLOP/s (%5.1f%% of GEMM)  %7.0f GB/s (%5.1f%% of copy)\n",
              what, seconds * 1e3, flops / seconds * 1e-12,
              100 * flops / seconds / ceilings.gemm_flops, bytes / seconds * 1e-9,
              100 * bytes / seconds / ceilings.copy_bytes);
}

// CG on (C + damping·I) x = ∇L; returns seconds per solve.
template <typename T>
double TimeCg(Problem<T>& p, Curvature curvature, double damping, int iterations, bool gpu,
              const char* label) {
  auto& be = p.objective->backend();
  p.objective->ValueAndGradient(p.theta, p.v);  // b = ∇L
  CurvatureOperator<T> op(*p.objective, p.theta, curvature, damping);
  auto x = be.Allocate(1, p.objective->num_params());
  CgOptions options;
  options.relative_tolerance = sizeof(T) == 4 ? 1e-5 : 1e-10;
  options.max_iterations = iterations;
  SolveSummary summary;
  const double s = Time(gpu, 1, [&] {
    be.Fill(x, T(0));
    summary = ConjugateGradient(op, p.v, x, options);
  });
  std::printf("    CG %-22s %9.3f ms  %3d iterations (%.3f ms each), %s, residual %.2e\n", label,
              s * 1e3, summary.iterations, s * 1e3 / std::max(1, summary.iterations),
              Name(summary.termination), summary.relative_residual);
  return s;
}

// Influence scoring: out (n × m) = per-example gradients · Sᵀ for m = 10 directions,
// without forming the gradients (Objective::PerExampleGradientDots).
template <typename T>
double TimeScoring(Problem<T>& p, bool gpu, int repeats) {
  auto& be = p.objective->backend();
  const int64_t m = 10, p_size = p.objective->num_params();
  auto S = Random(be, m, p_size, 3);
  auto out = be.Allocate(p.objective->num_examples(), m);
  return Time(gpu, repeats, [&] { p.objective->PerExampleGradientDots(p.theta, S, out); });
}

// The direct solver's setup: form (H + 1e-2 I) by p Hessian products, then Cholesky.
template <typename T>
void TimeDirect(Problem<T>& p) {
  auto& be = p.objective->backend();
  CurvatureOperator<T> op(*p.objective, p.theta, Curvature::kHessian, 1e-2);
  DirectFactorization<T> factorization;
  SolveSummary summary;
  const double s = Time(true, 1, [&] { summary = factorization.Factorize(op, DirectOptions{}); });
  const int64_t n = p.objective->num_params();
  auto B = Random(be, 10, n, 4), X = be.Allocate(10, n);
  const double solve = Time(true, 3, [&] { factorization.Solve(B, X); });
  std::printf("    direct (cuSOLVER) %9.3f ms to form and factorise the %lld x %lld matrix (%s); "
              "%.3f ms per 10 solves\n",
              s * 1e3, (long long)n, (long long)n, Name(summary.termination), solve * 1e3);
}

template <typename T>
void RunPrecision(const Options& o, const io::Dataset& data) {
  std::printf("\n== %s ==\n", PrecisionName<T>());
  auto gpu = kernels::MakeBackend<T>({kernels::DeviceKind::kCuda});
  std::printf("  backend: %s\n", gpu->Describe().c_str());
  const Ceilings ceilings = MeasureCeilings(*gpu, o);
  const size_t scalar = sizeof(T);
  struct Case {
    const char* name;
    std::vector<int64_t> hidden;
    Curvature cg_curvature;  // the MLP's Hessian is indefinite: CG uses Gauss-Newton there
    int cg_iterations;
  };
  for (const Case& c : {Case{"mlp 784-1024-1024-10", {1024, 1024}, Curvature::kGaussNewton, 20},
                        Case{"softmax regression 784-10", {}, Curvature::kHessian, 50}}) {
    const Model model = InitializeModel(Spec(c.hidden), data, 0, io::DType::kF64);
    const Architecture& arch = model.arch;
    std::printf("  %s, n = %lld, p = %lld, batch %lld\n", c.name, (long long)data.n,
                (long long)arch.num_params, (long long)o.batch);
    Timing on_gpu, on_cpu;
    double cg_gpu = 0, cg_cpu = 0, score_gpu = 0;
    {
      Problem<T> p = MakeProblem(*gpu, model, data, o.batch);
      on_gpu = TimeProducts(p, true, o.repeats);
      ReportRate("gradient", on_gpu.gradient, Flops(arch, data.n, Pass::kGradient),
                 Bytes(arch, data.n, Pass::kGradient, scalar), ceilings);
      ReportRate("HVP", on_gpu.hvp, Flops(arch, data.n, Pass::kHvp),
                 Bytes(arch, data.n, Pass::kHvp, scalar), ceilings);
      const bool gn = c.cg_curvature == Curvature::kGaussNewton;
      cg_gpu = TimeCg(p, c.cg_curvature, 1e-2, c.cg_iterations, true,
                      gn ? "(Gauss-Newton + 1e-2 I)" : "(Hessian + 1e-2 I)");
      score_gpu = TimeScoring(p, true, o.repeats);
      std::printf("    scoring all %lld examples against 10 directions: %.3f ms\n",
                  (long long)data.n, score_gpu * 1e3);
      if (c.hidden.empty()) TimeDirect(p);
    }
    if (!o.cpu) continue;
    auto cpu = kernels::MakeBackend<T>({});
    Problem<T> p = MakeProblem(*cpu, model, data, o.batch);
    on_cpu = TimeProducts(p, false, o.cpu_repeats);
    const bool cg_on_cpu = c.hidden.empty();  // 20 MLP HVPs on the CPU take minutes
    double score_cpu = 0;
    if (cg_on_cpu) {
      cg_cpu = TimeCg(p, c.cg_curvature, 1e-2, c.cg_iterations, false, "on the CPU");
      score_cpu = TimeScoring(p, false, o.cpu_repeats);
    }
    std::printf("    speedup over %s: gradient %.1fx, HVP %.1fx", cpu->Describe().c_str(),
                on_cpu.gradient / on_gpu.gradient, on_cpu.hvp / on_gpu.hvp);
    if (cg_on_cpu) std::printf(", CG %.1fx, scoring %.1fx", cg_cpu / cg_gpu, score_cpu / score_gpu);
    std::printf("\n");
  }
}

int Run(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> int64_t {
      if (i + 1 >= argc) Fail(arg, ": needs a value");
      return std::atoll(argv[++i]);
    };
    if (arg == "--n")
      o.n = value();
    else if (arg == "--batch")
      o.batch = value();
    else if (arg == "--repeats")
      o.repeats = static_cast<int>(value());
    else if (arg == "--cpu-repeats")
      o.cpu_repeats = static_cast<int>(value());
    else if (arg == "--no-cpu")
      o.cpu = false;
    else if (arg == "--device-only")
      o.device_only = true;
    else
      Fail(arg,
           ": unknown option (--n, --batch, --repeats, --cpu-repeats, --no-cpu, --device-only)");
  }
  if (o.device_only) {
    std::printf("%s\n",
                kernels::MakeBackend<double>({kernels::DeviceKind::kCuda})->Describe().c_str());
    return 0;
  }
  if (o.n < 1 || o.batch < 1 || o.repeats < 1 || o.cpu_repeats < 1)
    Fail("--n, --batch, --repeats and --cpu-repeats must be >= 1");
  std::printf("lethe GPU benchmark: %lld x 784 synthetic examples, 10 classes\n", (long long)o.n);
  const io::Dataset data = Synthetic(o.n, 784, 10);
  RunPrecision<float>(o, data);
  RunPrecision<double>(o, data);
  return 0;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines appear as they are timed, under tee too
  try {
    return lethe::Run(argc, argv);
  } catch (const lethe::Error& e) {
    std::fprintf(stderr, "lethe_bench_gpu: %s\n", e.what());
    return 1;
  }
}
