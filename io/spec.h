// The architecture spec: which layers, which loss, how much l2 (docs/formats.md).
//
//   {"format": "lethe/1",
//    "input": [1, 8, 8],                                  (optional: one example's shape)
//    "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 32},
//               {"type": "tanh"},
//               {"type": "residual", "layers": [...]}, ...],
//    "loss": "cross_entropy", "l2": 0.001}
//
// This parser checks the spec's structure (the top-level keys, the loss, that every layer
// is an object with a string "type", nested "layers" bodies); what a layer's own keys mean
// is its module's business (engine/layers/: each layer type reads and checks its keys when
// the architecture is built, so a new layer type touches no parser). Parsing stays strict:
// unknown keys, layer types or losses are errors, so a typo can never silently change the
// model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/ops.h"

namespace lethe::io {

struct LayerSpec {
  std::string type;           // "linear", "relu", "conv2d", "residual", ...
  std::string keys = "{}";    // every other key of the layer's object, as compact JSON text
  std::vector<LayerSpec> body;  // the layers of a "layers" key (a residual block's body)
  bool has_body = false;        // whether the object had a "layers" key (even an empty one)

  // Specs built in code (tests, benchmarks): a linear layer (empty bias: none; out -1:
  // unknown) and a layer with only a type (activations).
  static LayerSpec Linear(const std::string& weight, const std::string& bias = "",
                          int64_t out = -1);
  static LayerSpec Of(const std::string& type, const std::string& keys = "{}");
};

struct ModelSpec {
  std::vector<LayerSpec> layers;
  LossKind loss = LossKind::kCrossEntropy;
  double l2 = 0.0;             // the objective is (1/n) Σ lossᵢ + (l2/2)‖θ‖²
  std::vector<int64_t> input;  // one example's shape ([C, H, W], [L], [d]); empty: from X
  // Where it was read from (Parse's `what`: "spec.json", "model.safetensors: embedded
  // spec"), so that an error in a layer's keys can name that file; not serialised.
  std::string source;

  // `what` names the source ("model.safetensors: spec", "spec.json") in error messages.
  static ModelSpec Parse(const std::string& json_text, const std::string& what);
  std::string ToJson() const;  // compact, parseable by Parse
};

ModelSpec ReadSpecFile(const std::string& path);

}  // namespace lethe::io
