// The shape of a sequential model: each layer's widths and where its parameters sit
// in the flat parameter vector θ.
//
// θ order (docs/formats.md): layers in spec order; for each linear layer its weight
// [out, in] row-major, then its bias [out] if it has one. Activations own no parameters.
#pragma once

#include <cstdint>
#include <vector>

#include "io/spec.h"

namespace lethe {

struct LayerShape {
  io::LayerSpec::Type type = io::LayerSpec::Type::kLinear;
  Activation activation = Activation::kIdentity;
  int64_t in = 0, out = 0;      // widths of the layer's input and output
  int64_t weight_offset = -1;   // linear: offset of W [out, in] in θ
  int64_t bias_offset = -1;     // linear with bias: offset of b [out] in θ; else -1
  bool is_linear() const { return type == io::LayerSpec::Type::kLinear; }
};

struct Architecture {
  io::ModelSpec spec;
  std::vector<LayerShape> layers;
  int64_t input_dim = 0;
  int64_t output_dim = 0;
  int64_t num_params = 0;
  int first_linear = 0;  // backpropagation stops here: nothing below owns parameters

  // `linear_out[j]` is the output width of the j-th linear layer. Throws lethe::Error
  // (prefixed by `what`) when widths are missing or do not chain.
  static Architecture Build(const io::ModelSpec& spec, int64_t input_dim,
                            const std::vector<int64_t>& linear_out, const std::string& what);
  // Widths from the spec's "out" fields; the last linear layer's width, when the spec
  // does not give it, is `output_width` (from the loss and the data).
  static Architecture FromSpec(const io::ModelSpec& spec, int64_t input_dim,
                               int64_t output_width, const std::string& what);
};

}  // namespace lethe
