// Small random problems for derivative and solver tests (fixed seeds).
#pragma once

#include <random>
#include <vector>

#include "engine/model.h"
#include "engine/objective.h"
#include "io/dataset.h"
#include "io/spec.h"

namespace lethe::testing {

// An MLP spec: linear(in → hidden) [act] linear(→ hidden) [act] linear(→ out), or a
// single linear layer when `hidden` is 0.
inline io::ModelSpec MlpSpec(LossKind loss, Activation act, int hidden, double l2,
                             int depth = 2) {
  io::ModelSpec spec;
  spec.loss = loss;
  spec.l2 = l2;
  int index = 0;
  auto linear = [&](int out, bool bias) {
    spec.layers.push_back(io::LayerSpec::Linear(std::to_string(index) + ".weight",
                                                bias ? std::to_string(index) + ".bias" : "", out));
    ++index;
  };
  auto activation = [&] {
    spec.layers.push_back(io::LayerSpec::Of(Name(act)));
    ++index;
  };
  if (hidden > 0)
    for (int k = 0; k < depth; ++k) {
      linear(hidden, k == 0 || k % 2 == 1);  // one layer without bias, to test that path
      activation();
    }
  linear(-1, true);
  return spec;
}

// MlpSpec with a residual block after the first hidden layer, y = h + body(h), its body
// linear(→ hidden) [act] linear(→ hidden, no bias) and, when `nested`, a second residual
// block inside it: the depth-first parameter order and the body's buffers are exercised.
inline io::ModelSpec ResidualSpec(LossKind loss, Activation act, int hidden, double l2,
                                  bool nested) {
  io::ModelSpec spec;
  spec.loss = loss;
  spec.l2 = l2;
  spec.layers.push_back(io::LayerSpec::Linear("0.weight", "0.bias", hidden));
  spec.layers.push_back(io::LayerSpec::Of(Name(act)));
  io::LayerSpec block = io::LayerSpec::Of("residual");
  block.has_body = true;
  block.body = {io::LayerSpec::Linear("2.body.0.weight", "2.body.0.bias", hidden),
                io::LayerSpec::Of(Name(act)), io::LayerSpec::Linear("2.body.2.weight", "", hidden)};
  if (nested) {
    io::LayerSpec inner = io::LayerSpec::Of("residual");
    inner.has_body = true;
    inner.body = {io::LayerSpec::Of(Name(act)),
                  io::LayerSpec::Linear("2.body.3.body.1.weight", "2.body.3.body.1.bias", hidden)};
    block.body.push_back(inner);
  }
  spec.layers.push_back(block);
  spec.layers.push_back(io::LayerSpec::Of(Name(act)));
  spec.layers.push_back(io::LayerSpec::Linear("4.weight", "4.bias"));
  return spec;
}

// MlpSpec with its first linear layer "frozen": its tensors are fixed, θ is the rest.
inline io::ModelSpec FrozenFirstLayerSpec(LossKind loss, Activation act, int hidden, double l2) {
  io::ModelSpec spec = MlpSpec(loss, act, hidden, l2);
  spec.layers[0].keys = R"({"bias": "0.bias", "frozen": true, "out": )" + std::to_string(hidden) +
                        R"(, "weight": "0.weight"})";
  return spec;
}

inline io::Dataset RandomData(LossKind loss, int64_t n, int64_t d, int64_t classes,
                              uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  io::Dataset data;
  data.path = "random";
  data.n = n;
  data.d = d;
  for (int64_t i = 0; i < n * d; ++i) data.X.push_back(normal(rng));
  data.target_width = loss == LossKind::kMse ? classes : 1;
  data.integer_targets = loss != LossKind::kMse;
  for (int64_t i = 0; i < n; ++i) {
    data.ids.push_back(i);
    if (loss == LossKind::kCrossEntropy)
      data.y.push_back(static_cast<double>(rng() % classes));
    else if (loss == LossKind::kLogistic)
      data.y.push_back(static_cast<double>(rng() % 2));
    else
      for (int64_t k = 0; k < classes; ++k) data.y.push_back(normal(rng));
  }
  // Make sure every class appears, so the output width is `classes`.
  if (loss == LossKind::kCrossEntropy) data.y[0] = static_cast<double>(classes - 1);
  return data;
}

// A random model: initialised as PyTorch would, then perturbed so that no activation
// sits at a special point.
inline Model RandomModel(const io::ModelSpec& spec, const io::Dataset& data, uint64_t seed) {
  Model m = InitializeModel(spec, data, seed, io::DType::kF64);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (double& t : m.theta) t += normal(rng);
  return m;
}

}  // namespace lethe::testing
