#include "engine/architecture.h"

#include "common/error.h"

namespace lethe {
namespace {

// Widths and parameter counts come from specs, model files and labels, so they are
// checked before anything multiplies them: out * in overflowed int64 for "out": 2^62
// (undefined behaviour, then std::length_error from the vector). The bounds are far
// beyond any model lethe can train (θ alone would be 128 GB in doubles at the limit)
// and low enough that no product of two checked values overflows.
constexpr int64_t kMaxWidth = int64_t{1} << 31;
constexpr int64_t kMaxParameters = int64_t{1} << 34;

}  // namespace

Architecture Architecture::Build(const io::ModelSpec& spec, int64_t input_dim,
                                 const std::vector<int64_t>& linear_out,
                                 const std::string& what) {
  Architecture arch;
  arch.spec = spec;
  arch.input_dim = input_dim;
  if (input_dim <= 0) Fail(what, ": input width must be positive");
  if (input_dim > kMaxWidth)
    Fail(what, ": input width ", input_dim, " exceeds the limit of ", kMaxWidth);
  int64_t width = input_dim;
  size_t j = 0;
  arch.first_linear = -1;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const io::LayerSpec& ls = spec.layers[i];
    LayerShape shape;
    shape.type = ls.type;
    shape.activation = ls.activation;
    shape.in = width;
    if (ls.type == io::LayerSpec::Type::kLinear) {
      LETHE_CHECK(j < linear_out.size());
      shape.out = linear_out[j++];
      if (shape.out <= 0) Fail(what, ": layer ", i, " (linear) has no output width");
      if (ls.out > 0 && ls.out != shape.out)
        Fail(what, ": layer ", i, " (linear): spec says \"out\": ", ls.out, " but the width is ",
             shape.out);
      if (shape.out > kMaxWidth)
        Fail(what, ": layer ", i, " (linear) output width ", shape.out, " exceeds the limit of ",
             kMaxWidth);
      // Both widths are at most 2^31 and the running total at most 2^34 (checked after
      // each layer), so this sum stays below 2^63.
      shape.weight_offset = arch.num_params;
      arch.num_params += shape.out * shape.in;
      if (!ls.bias.empty()) {
        shape.bias_offset = arch.num_params;
        arch.num_params += shape.out;
      }
      if (arch.num_params > kMaxParameters)
        Fail(what, ": layer ", i, " (linear, ", shape.in, " -> ", shape.out, ") brings the model to ",
             arch.num_params, " parameters, more than the limit of ", kMaxParameters);
      if (arch.first_linear < 0) arch.first_linear = static_cast<int>(i);
    } else {
      shape.out = width;
    }
    width = shape.out;
    arch.layers.push_back(shape);
  }
  LETHE_CHECK(j == linear_out.size());
  arch.output_dim = width;
  if (spec.loss == LossKind::kLogistic && width != 1)
    Fail(what, ": loss logistic needs output width 1, the model has ", width);
  if (spec.loss == LossKind::kCrossEntropy && width < 2)
    Fail(what, ": loss cross_entropy needs at least 2 outputs, the model has ", width);
  return arch;
}

Architecture Architecture::FromSpec(const io::ModelSpec& spec, int64_t input_dim,
                                    int64_t output_width, const std::string& what) {
  std::vector<int64_t> widths;
  int last = -1;
  for (size_t i = 0; i < spec.layers.size(); ++i)
    if (spec.layers[i].type == io::LayerSpec::Type::kLinear) last = static_cast<int>(i);
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const io::LayerSpec& ls = spec.layers[i];
    if (ls.type != io::LayerSpec::Type::kLinear) continue;
    if (ls.out > 0)
      widths.push_back(ls.out);
    else if (static_cast<int>(i) == last)
      widths.push_back(output_width);
    else
      Fail(what, ": layer ", i, " (linear) needs \"out\" (its output width) to train from a spec");
  }
  return Build(spec, input_dim, widths, what);
}

}  // namespace lethe
