#include "engine/architecture.h"

#include "common/error.h"
#include "common/quote.h"
#include "engine/layers/plan.h"

namespace lethe {
namespace {

// Widths and parameter counts come from specs, model files and labels, so they are
// checked before anything multiplies them: out * in overflowed int64 for "out": 2^62
// (undefined behaviour, then std::length_error from the vector). The bounds are far
// beyond any model lethe can train (θ alone would be 128 GB in doubles at the limit)
// and low enough that no product of two checked values overflows.
constexpr int64_t kMaxWidth = int64_t{1} << 31;
constexpr int64_t kMaxParameters = int64_t{1} << 34;

// Whether a shape whose every dimension is in [1, kMaxWidth] (or unknown, -1) has at most
// kMaxParameters elements. Its product can overflow int64 before the comparison (three dimensions of 2^31
// make 2^93; ShapeSize of [2, 2^31, 2^31] wrapped to a negative size, which passed the
// check and surfaced as "takes images, but its input has shape [2, 2147483648, ...]").
bool SizeWithinLimit(const Shape& shape) {
  int64_t size = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(size, d, &size) || size > kMaxParameters) return false;
  return true;
}

// A tensor name or type from the input, as lethe's messages quote them: "name", escaped.
std::string Named(const std::string& name) { return "\"" + Escape(name) + "\""; }

}  // namespace

int64_t ShapeSize(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    n *= d;  // callers keep every dimension ≤ 2^31 and every size ≤ 2^34
  }
  return n;
}

std::string ShapeText(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + (shape[i] < 0 ? std::string("?") : std::to_string(shape[i]));
  return s + "]";
}

int64_t LayerShape::num_params() const {
  int64_t n = 0;
  for (const TensorInfo& t : tensors)
    if (t.trainable) n += t.size();
  for (const LayerShape& b : body) n += b.num_params();
  return n;
}

void Architecture::ForEachTensor(
    const std::function<void(const LayerShape&, const TensorInfo&)>& f) const {
  std::function<void(const std::vector<LayerShape>&)> walk = [&](const std::vector<LayerShape>& ls) {
    for (const LayerShape& l : ls) {
      for (const TensorInfo& t : l.tensors) f(l, t);
      walk(l.body);
    }
  };
  walk(layers);
}

// ---- the driver behind layers::PlanContext -----------------------------------------------

namespace layers {

struct PlanContext::Driver {
  const ArchitectureSource& source;
  const std::string& what;
  int64_t num_params = 0, num_constants = 0;
  std::set<std::string> names;
  int64_t resolved_input = -1;
  // Layers that took DataOutputWidth(): index and name.
  std::vector<std::pair<std::string, std::string>> output_width_takers;

  std::vector<LayerShape> PlanList(const std::vector<io::LayerSpec>& specs, Shape in,
                                   const std::string& prefix) {
    std::vector<LayerShape> out;
    for (size_t i = 0; i < specs.size(); ++i) {
      const io::LayerSpec& ls = specs[i];
      const std::string index = prefix + std::to_string(i);
      const LayerType* type = FindLayerType(ls.type);
      if (!type)
        lethe::Fail(what, ": layer ", index, ": unknown layer type ", Named(ls.type), " (known: ",
             KnownLayerTypes(), ")");
      PlanContext ctx(*this, ls, in, index, what + ": layer " + index + " (" + ls.type + ")");
      type->plan(ctx);
      out.push_back(ctx.Finish());
      in = out.back().out;
    }
    return out;
  }
};

PlanContext::PlanContext(Driver& driver, const io::LayerSpec& spec, const Shape& in,
                         std::string index, std::string where)
    : driver_(driver), spec_(spec), in_(in), out_(in), keys_(spec, std::move(where)),
      index_(std::move(index)) {
  frozen_ = keys_.Bool("frozen").value_or(false);
}

PlanContext::~PlanContext() = default;

int64_t PlanContext::InputWidth(const char* what_needs_it) const {
  if (in_.size() != 1)
    Fail("takes a vector, but its input has shape ", ShapeText(in_), " (", what_needs_it,
         "; insert a \"flatten\" layer before it)");
  return in_[0];
}

std::optional<Shape> PlanContext::FileShape(const std::string& name) const {
  if (!driver_.source.file_shape) return std::nullopt;
  std::optional<Shape> shape = driver_.source.file_shape(name);
  if (!shape) Fail("the spec names tensor ", Named(name), " but the file has no such tensor");
  return shape;
}

int64_t PlanContext::DataOutputWidth() {
  driver_.output_width_takers.emplace_back(index_, keys_.where());
  if (driver_.output_width_takers.size() > 1)  // an earlier layer took it: that one was wrong
    lethe::Fail(driver_.output_width_takers.front().second,
                ": needs \"out\" (its output width) to train from a spec");
  return driver_.source.data_output_width ? driver_.source.data_output_width() : -1;
}

void PlanContext::AddTensor(const std::string& name, const Shape& shape, bool fixed) {
  for (int64_t d : shape)
    if (d <= 0 || d > kMaxWidth)
      Fail("tensor ", Named(name), " would have shape ", ShapeText(shape),
           ": every dimension must be in [1, ", kMaxWidth, "]");
  int64_t size = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(size, d, &size) || size > kMaxParameters)
      Fail("tensor ", Named(name), " of shape ", ShapeText(shape), " would hold over ",
           kMaxParameters, " parameters, more than the limit");
  if (!driver_.names.insert(name).second) Fail("tensor ", Named(name), " is used twice");
  if (std::optional<Shape> file = FileShape(name); file && *file != shape)
    Fail("tensor ", Named(name), " has shape ", ShapeText(*file), ", expected ", ShapeText(shape));
  has_parameters_ = has_parameters_ || !fixed;
  TensorInfo t{.name = name, .shape = shape, .trainable = !(frozen_ || fixed)};
  int64_t& count = t.trainable ? driver_.num_params : driver_.num_constants;
  t.offset = count;
  count += size;
  if (driver_.num_params + driver_.num_constants > kMaxParameters)
    Fail("brings the model to ", driver_.num_params + driver_.num_constants,
         " parameters, more than the limit of ", kMaxParameters);
  tensors_.push_back(std::move(t));
}

void PlanContext::ResolveInput(int64_t width) {
  LETHE_CHECK(in_.size() == 1 && in_[0] < 0 && width > 0);
  if (driver_.resolved_input < 0) driver_.resolved_input = width;
  in_ = {width};
}

Shape PlanContext::PlanBody(const Shape& in) {
  body_planned_ = true;
  body_ = driver_.PlanList(spec_.body, in, index_ + ".");  // layer 3's body: 3.0, 3.1, ...
  return body_.empty() ? in : body_.back().out;
}

LayerShape PlanContext::Finish() {
  keys_.Done();
  if (spec_.has_body && !body_planned_) Fail("unknown key \"layers\" (only residual has a body)");
  // Fixed tensors (BatchNorm's statistics) are not parameters: a batchnorm without weight
  // and bias has nothing to freeze, as a relu has not.
  if (frozen_ && !has_parameters_) Fail("\"frozen\": true on a layer without parameters");
  for (int64_t d : out_)
    if (d == 0 || d > kMaxWidth)
      Fail("output shape ", ShapeText(out_), ": every dimension must be in [1, ", kMaxWidth, "]");
  if (!SizeWithinLimit(out_))
    Fail("output shape ", ShapeText(out_), " has more than ", kMaxParameters, " elements");
  LayerShape shape;
  shape.spec = spec_;
  shape.spec.keys = keys_.Dump();
  shape.in = in_;
  shape.out = out_;
  shape.tensors = std::move(tensors_);
  shape.body = std::move(body_);
  shape.spec.body.clear();
  for (const LayerShape& b : shape.body) shape.spec.body.push_back(b.spec);
  shape.frozen = frozen_;
  return shape;
}

}  // namespace layers

// ---- Build ---------------------------------------------------------------------------------

Architecture Architecture::Build(const io::ModelSpec& spec, const ArchitectureSource& source,
                                 const std::string& what) {
  // One example's shape: the spec's "input"; else, with data, X's trailing dimensions as
  // the first layer that cares wants them (flattened unless it takes shaped input); else
  // unknown until a layer learns it from its tensor (linear's weight).
  Shape in = spec.input;
  bool flat_inferable = false;
  if (in.empty()) {
    layers::InputUse use = layers::InputUse::kAny;
    for (const io::LayerSpec& ls : spec.layers)
      if (const layers::LayerType* t = layers::FindLayerType(ls.type);
          t && t->input_use != layers::InputUse::kAny) {
        use = t->input_use;
        break;
      }
    flat_inferable = use == layers::InputUse::kFlat;
    if (source.example_shape)
      in = use == layers::InputUse::kShaped ? *source.example_shape
                                            : Shape{ShapeSize(*source.example_shape)};
    else
      in = {-1};
  }
  for (int64_t d : in)
    if (d == 0 || d > kMaxWidth)
      Fail(what, ": input shape ", ShapeText(in), ": every dimension must be in [1, ", kMaxWidth,
           "]");
  if (!SizeWithinLimit(in))
    Fail(what, ": input shape ", ShapeText(in), " has more than ", kMaxParameters, " elements");

  Architecture arch;
  for (int attempt = 0;; ++attempt) {
    layers::PlanContext::Driver driver{.source = source, .what = what};
    arch.layers = driver.PlanList(spec.layers, in, "");
    if (driver.resolved_input > 0 && attempt == 0) {
      // The input width became known at a later layer: plan again with it, so that every
      // layer before that one has its shapes.
      in = {driver.resolved_input};
      continue;
    }
    // Only the model's last layer with tensors may take its width from the data.
    if (!driver.output_width_takers.empty()) {
      size_t last = arch.layers.size();
      while (last > 0 && arch.layers[last - 1].tensors.empty()) --last;
      if (driver.output_width_takers[0].first != std::to_string(last - 1))
        Fail(driver.output_width_takers[0].second,
             ": needs \"out\" (its output width) to train from a spec");
    }
    arch.num_params = driver.num_params;
    arch.constants.assign(static_cast<size_t>(driver.num_constants), 0.0);
    break;
  }
  if (ShapeSize(in) < 0)
    Fail(what, ": the shape of an example is unknown: give \"input\" (e.g. [C, H, W]) in the spec");
  arch.input_shape = in;
  arch.input_dim = ShapeSize(in);
  const Shape& out = arch.layers.back().out;
  if (out.size() != 1 && !source.one_layer_test)
    Fail(what, ": the model's output has shape ", ShapeText(out),
         ": it must be a vector (end with \"flatten\" or \"global_avgpool\" and a linear layer)");
  arch.output_dim = ShapeSize(out);
  if (arch.num_params == 0 && !source.one_layer_test) Fail(what, ": the model has no trainable parameters");
  arch.spec = spec;
  arch.spec.layers.clear();
  for (const LayerShape& l : arch.layers) arch.spec.layers.push_back(l.spec);
  // Record the input shape unless the first linear layer's weight implies it (lethe's
  // files before example shapes, which stay byte-identical).
  if (arch.spec.input.empty() && !(flat_inferable && in.size() == 1)) arch.spec.input = in;
  if (spec.loss == LossKind::kLogistic && arch.output_dim != 1)
    Fail(what, ": loss logistic needs output width 1, the model has ", arch.output_dim);
  if (spec.loss == LossKind::kCrossEntropy && arch.output_dim < 2)
    Fail(what, ": loss cross_entropy needs at least 2 outputs, the model has ", arch.output_dim);
  return arch;
}

}  // namespace lethe
