// The problems the benchmarks time, shared by bench_engine.cc (CPU, Google Benchmark) and
// gpu/bench_gpu.cc (GPU against CPU), so both measure the same thing and count it the same way.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "engine/architecture.h"
#include "io/dataset.h"
#include "io/spec.h"

namespace lethe::bench {

// n × d standard-normal features, labels cycling through `classes` (fixed seed).
inline io::Dataset Synthetic(int64_t n, int64_t d, int64_t classes) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal;
  io::Dataset data;
  data.path = "synthetic";
  data.n = n, data.d = d;
  data.X.resize(n * d);
  for (double& x : data.X) x = normal(rng);
  for (int64_t i = 0; i < n; ++i)
    data.y.push_back(static_cast<double>(i % classes)), data.ids.push_back(i);
  return data;
}

// linear(→ h) relu for each hidden width h, then a linear output layer; cross_entropy, l2 1e-3.
inline io::ModelSpec Spec(const std::vector<int64_t>& hidden) {
  io::ModelSpec spec;
  spec.l2 = 1e-3;
  for (size_t i = 0; i < hidden.size(); ++i) {
    spec.layers.push_back(io::LayerSpec::Linear(std::to_string(2 * i) + ".weight",
                                                std::to_string(2 * i) + ".bias", hidden[i]));
    spec.layers.push_back(io::LayerSpec::Of("relu"));
  }
  spec.layers.push_back(io::LayerSpec::Linear("out.weight", "out.bias"));
  return spec;
}

enum class Pass { kGradient, kPerExample, kHvp };

// Matrix-product flops (2·m·n·k each) of one pass over n examples, from the layer shapes.
// The first linear layer propagates nothing further down.
inline double Flops(const Architecture& arch, int64_t n, Pass pass) {
  double total = 0;
  bool first = true;
  for (size_t l = 0; l < arch.layers.size(); ++l, first = false) {
    const LayerShape& s = arch.layers[l];
    if (s.type() != "linear") continue;
    const double f = 2.0 * n * s.in_width() * s.out_width();
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

}  // namespace lethe::bench
