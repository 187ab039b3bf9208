// Convolution products through the backend's window ops, next to the same backend's GEMM
// on the same shape (the ceiling: a convolution by im2col is one GEMM plus data movement).
// Shapes of a LeNet-style CNN on 28 × 28 images, batch 256:
//   conv1  1 × 28 × 28 → 32 × 24 × 24, 5 × 5 kernel   (K = 25:  the patch copy dominates)
//   conv2 32 × 12 × 12 → 64 ×  8 ×  8, 5 × 5 kernel   (K = 800: GEMM-bound)
// Each product counts only its GEMM's flops, 2 · (count·OH·OW) · C_out · K:
//   forward       y    = TransposeRows(Im2Col(x) · Wᵀ)
//   weight grad   ∇W   = TransposeRows(δ)ᵀ · Im2Col(x)
//   input grad    δ_in = Col2Im(TransposeRows(δ) · W)
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
const ConvShape kShapes[] = {{256, 1, 28, 5, 32}, {256, 32, 12, 5, 64}};

struct Buffers {
  std::unique_ptr<kernels::Backend<double>> backend;
  WindowGeometry g;
  int64_t count, out;
  Matrix<double> x, w, y, cols, z;
  explicit Buffers(const ConvShape& s)
      : backend(kernels::MakeBackend<double>({})),
        g(s.Geometry()),
        count(s.count),
        out(s.out_channels) {
    auto& be = *backend;
    x = be.Allocate(count, g.in_size());
    be.Fill(x, 0.5);
    w = be.Allocate(out, g.patch_size());
    be.Fill(w, 0.25);
    y = be.Allocate(count, out * g.positions());
    be.Fill(y, 1.0);
    cols = be.Allocate(count * g.positions(), g.patch_size());
    z = be.Allocate(count * g.positions(), out);
  }
  double Flops() const { return 2.0 * count * g.positions() * out * g.patch_size(); }
  Matrix<double> ZRows() const { return z.Reshaped(count, g.positions() * out); }
};

void Report(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Gemm(benchmark::State& state) {
  Buffers b(kShapes[state.range(0)]);
  for (auto _ : state) b.backend->Gemm(Op::kNone, Op::kTranspose, 1.0, b.cols, b.w, 0.0, b.z);
  Report(state, b.Flops());
}
void BM_Forward(benchmark::State& state) {
  Buffers b(kShapes[state.range(0)]);
  auto& be = *b.backend;
  for (auto _ : state) {
    be.Im2Col(b.g, b.x, b.cols);
    be.Gemm(Op::kNone, Op::kTranspose, 1.0, b.cols, b.w, 0.0, b.z);
    be.TransposeRows(b.g.positions(), b.out, b.ZRows(), b.y);
  }
  Report(state, b.Flops());
}
void BM_WeightGradient(benchmark::State& state) {
  Buffers b(kShapes[state.range(0)]);
  auto& be = *b.backend;
  for (auto _ : state) {
    be.TransposeRows(b.out, b.g.positions(), b.y, b.ZRows());
    be.Im2Col(b.g, b.x, b.cols);
    be.Gemm(Op::kTranspose, Op::kNone, 1.0, b.z, b.cols, 0.0, b.w);
  }
  Report(state, b.Flops());
}
void BM_InputGradient(benchmark::State& state) {
  Buffers b(kShapes[state.range(0)]);
  auto& be = *b.backend;
  for (auto _ : state) {
    be.TransposeRows(b.out, b.g.positions(), b.y, b.ZRows());
    be.Gemm(Op::kNone, Op::kNone, 1.0, b.z, b.w, 0.0, b.cols);
    be.Col2Im(b.g, b.cols, 0.0, b.x);
  }
  Report(state, b.Flops());
}
// Argument: the index into kShapes (0: conv1, 1: conv2).
BENCHMARK(BM_Gemm)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Forward)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_WeightGradient)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_InputGradient)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace lethe

BENCHMARK_MAIN();
