// The shape of a model: what each layer takes and gives per example, the tensors it owns,
// and where they sit — trainable ones in the flat parameter vector θ, fixed ones (a frozen
// layer's parameters, BatchNorm's running statistics) in `constants`.
//
// θ order (docs/formats.md): layers in spec order, depth-first through residual bodies;
// within a layer, its tensors in the order its module declares them (weight, then bias);
// fixed tensors are not in θ. Each layer type's module (engine/layers/) reads its own spec
// keys and declares its shapes and tensors (layers::LayerType::plan); this file only walks
// the list.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "io/spec.h"

namespace lethe {

// One example's shape: [d] (a feature vector), [C, H, W] (an image), [L] (token ids).
// A dimension of -1 is not known yet (a model file read without data: see Build).
using Shape = std::vector<int64_t>;
int64_t ShapeSize(const Shape& shape);      // ∏ dims (-1 when any is unknown)
std::string ShapeText(const Shape& shape);  // "[1, 8, 8]"

struct TensorInfo {
  std::string name;   // in the model file
  Shape shape;
  bool trainable = true;  // in θ (else a fixed tensor, in Architecture::constants)
  int64_t offset = 0;     // where its values start, in θ or in the constants
  int64_t size() const { return ShapeSize(shape); }
};

struct LayerShape {
  io::LayerSpec spec;  // as resolved: widths the file or the data decided are filled in
  Shape in, out;
  std::vector<TensorInfo> tensors;  // the layer's own (not its body's), in θ order
  std::vector<LayerShape> body;     // a residual block's layers
  bool frozen = false;              // "frozen": true — its parameters are fixed tensors
  const std::string& type() const { return spec.type; }
  int64_t in_width() const { return ShapeSize(in); }
  int64_t out_width() const { return ShapeSize(out); }
  // Trainable elements of its tensors and its body's.
  int64_t num_params() const;
};

// What Build needs beyond the spec, from wherever the model comes from.
struct ArchitectureSource {
  // The data's shape of one example (X's trailing dimensions), when data are at hand.
  std::optional<Shape> example_shape;
  // Loading a model file: the shape of its tensor `name`, or nullopt when it has none.
  std::function<std::optional<Shape>(const std::string&)> file_shape;
  // Training from a spec: the output width the data decide (classes, targets), for the
  // last layer whose width the spec leaves open; asked only when a layer needs it (the
  // labels are checked then). Empty: unknown.
  std::function<int64_t()> data_output_width;
  // Tests of one layer alone (an activation, a pooling layer) build a model of it: without
  // trainable parameters or a vector output, which a model file or spec may not be.
  bool one_layer_test = false;
};

struct Architecture {
  io::ModelSpec spec;  // as resolved (LayerShape::spec of each layer; "input" when not flat)
  std::vector<LayerShape> layers;
  Shape input_shape;
  int64_t input_dim = 0;   // ShapeSize(input_shape): X's columns
  int64_t output_dim = 0;
  int64_t num_params = 0;  // |θ|: trainable elements
  // The values of the fixed tensors (frozen parameters, BatchNorm statistics) at their
  // TensorInfo::offset: part of the model's function, not of θ. Filled by LoadModel /
  // InitializeModel; Build sizes it.
  std::vector<double> constants;

  // Throws lethe::Error (prefixed by `what`, and naming the layer) when a layer's keys are
  // wrong, shapes do not chain, a tensor the file has differs from what the layer needs,
  // or the model has no trainable parameter.
  static Architecture Build(const io::ModelSpec& spec, const ArchitectureSource& source,
                            const std::string& what);

  // Every tensor, depth-first in θ order (fixed ones included), with its layer.
  void ForEachTensor(const std::function<void(const LayerShape&, const TensorInfo&)>& f) const;
};

}  // namespace lethe
