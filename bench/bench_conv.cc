// Convolution products through the backend's window ops, next to the same backend's GEMM
// on the same shape (the ceiling: a convolution by im2col is one GEMM plus data movement).
// Shapes of bench/compare/cnn_vs_torch.py's LeNet on 28 × 28 images, batch 2048 (the
// objective's batch), f64 and f32:
//   conv1  1 × 28 × 28 → 16 × 24 × 24, 5 × 5 kernel   (K = 25:  the patch copy dominates)
//   conv2 16 × 12 × 12 → 32 ×  8 ×  8, 5 × 5 kernel   (K = 400: GEMM-bound)
// Each product counts only its GEMM's flops, 2 · (count·OH·OW) · C_out · K:
//   forward       y    = ConvForward(x, W)            (Im2Col(x) · Wᵀ, channels-first)
//   weight grad   ∇W   = ConvWeightGradient(x, δ)     (δ's channels-last rows ᵀ · Im2Col(x))
//   input grad    δ_in = ConvInputGradient(δ, W)      (Col2Im(δ's channels-last rows · W))
// each as the backend runs it (the CPU: fused, kernels/cpu/cpu_conv_ops.cc) and composed
// from Im2Col, Gemm, TransposeRows and Col2Im (kernels/conv_ops.cc), beside the GEMM alone.
//   ./build/bench/lethe_bench_conv --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "kernels/backend.h"

namespace lethe {
namespace {

using kernels::Matrix;
using kernels::Op;
using kernels::WindowGeometry;

struct ConvShape {
  int64_t count, channels, size, kernel, out_channels;
  WindowGeometry Geometry() const {
    WindowGeometry g;
    g.channels = channels, g.height = size, g.width = size;
    g.kernel_h = kernel, g.kernel_w = kernel;
    return g;
  }
};
const ConvShape kShapes[] = {{2048, 1, 28, 5, 16}, {2048, 16, 12, 5, 32}};

template <typename T>
struct Buffers {
  std::unique_ptr<kernels::Backend<T>> backend;
  WindowGeometry g;
  int64_t count, out;
  Matrix<T> x, w, y, cols, z;
  explicit Buffers(const ConvShape& s)
      : backend(kernels::MakeBackend<T>({})),
        g(s.Geometry()),
        count(s.count),
        out(s.out_channels) {
    auto& be = *backend;
    x = be.Allocate(count, g.in_size());
    be.Fill(x, T(0.5));
    w = be.Allocate(out, g.patch_size());
    be.Fill(w, T(0.25));
    y = be.Allocate(count, out * g.positions());
    be.Fill(y, T(1));
    cols = be.Allocate(count * g.positions(), g.patch_size());
    z = be.Allocate(count * g.positions(), out);
  }
  double Flops() const { return 2.0 * count * g.positions() * out * g.patch_size(); }
  Matrix<T> ZRows() const { return z.Reshaped(count, g.positions() * out); }
};

void Report(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <typename T>
void BM_Gemm(benchmark::State& state) {
  Buffers<T> b(kShapes[state.range(0)]);
  for (auto _ : state) b.backend->Gemm(Op::kNone, Op::kTranspose, T(1), b.cols, b.w, T(0), b.z);
  Report(state, b.Flops());
}
// The backend's convolution products (on the CPU fused, one example at a time).
template <typename T>
void BM_Forward(benchmark::State& state) {
  Buffers<T> b(kShapes[state.range(0)]);
  for (auto _ : state) b.backend->ConvForward(b.g, b.x, b.w, Matrix<T>(), T(0), b.y, b.cols, b.z);
  Report(state, b.Flops());
}
template <typename T>
void BM_WeightGradient(benchmark::State& state) {
  Buffers<T> b(kShapes[state.range(0)]);
  for (auto _ : state)
    b.backend->ConvWeightGradient(b.g, b.x, b.y, T(0), b.w, Matrix<T>(), b.cols, b.z);
  Report(state, b.Flops());
}
template <typename T>
void BM_InputGradient(benchmark::State& state) {
  Buffers<T> b(kShapes[state.range(0)]);
  for (auto _ : state) b.backend->ConvInputGradient(b.g, b.y, b.w, T(0), b.x, b.cols, b.z);
  Report(state, b.Flops());
}
// The same products composed from Im2Col, one GEMM over the batch, TransposeRows and Col2Im
// (kernels/conv_ops.cc: what the CPU ran before the fused products, and what CUDA runs).
template <typename T>
void BM_ComposedForward(benchmark::State& state) {
  Buffers<T> b(kShapes[state.range(0)]);
  for (auto _ : state)
    kernels::ComposedConvForward(*b.backend, b.g, b.x, b.w, Matrix<T>(), T(0), b.y, b.cols, b.z);
  Report(state, b.Flops());
}
template <typename T>
void BM_ComposedWeightGradient(benchmark::State& state) {
  Buffers<T> b(kShapes[state.range(0)]);
  for (auto _ : state)
    kernels::ComposedConvWeightGradient(*b.backend, b.g, b.x, b.y, T(0), b.w, Matrix<T>(), b.cols,
                                        b.z);
  Report(state, b.Flops());
}
template <typename T>
void BM_ComposedInputGradient(benchmark::State& state) {
  Buffers<T> b(kShapes[state.range(0)]);
  for (auto _ : state)
    kernels::ComposedConvInputGradient(*b.backend, b.g, b.y, b.w, T(0), b.x, b.cols, b.z);
  Report(state, b.Flops());
}
// Argument: the index into kShapes (0: conv1, 1: conv2).
BENCHMARK_TEMPLATE(BM_Gemm, double)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Gemm, float)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Forward, double)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Forward, float)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_WeightGradient, double)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_WeightGradient, float)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_InputGradient, double)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_InputGradient, float)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ComposedForward, double)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ComposedForward, float)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ComposedWeightGradient, double)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ComposedWeightGradient, float)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ComposedInputGradient, double)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ComposedInputGradient, float)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace lethe

BENCHMARK_MAIN();
