// The architecture spec: which layers, which loss, how much l2 (docs/formats.md).
//
//   {"format": "lethe/1",
//    "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 32},
//               {"type": "tanh"}, ...],
//    "loss": "cross_entropy", "l2": 0.001}
//
// Parsing is strict: unknown keys, layer types or losses are errors, so a typo can never
// silently change the model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/ops.h"

namespace lethe::io {

struct LayerSpec {
  enum class Type { kLinear, kActivation };
  Type type = Type::kLinear;
  Activation activation = Activation::kIdentity;  // kActivation only
  std::string weight;                             // kLinear: tensor name, default "<index>.weight"
  std::string bias;                               // kLinear: tensor name, empty = no bias
  int64_t out = -1;                               // kLinear: output width, -1 = unknown
};

struct ModelSpec {
  std::vector<LayerSpec> layers;
  LossKind loss = LossKind::kCrossEntropy;
  double l2 = 0.0;  // the objective is (1/n) Σ lossᵢ + (l2/2)‖θ‖²

  // `what` names the source ("model.safetensors: spec", "spec.json") in error messages.
  static ModelSpec Parse(const std::string& json_text, const std::string& what);
  std::string ToJson() const;  // compact, parseable by Parse
};

ModelSpec ReadSpecFile(const std::string& path);

}  // namespace lethe::io
