#include "engine/model.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <unordered_set>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "io/safetensors.h"

namespace lethe {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A label as text: integers in full ("100000", not "1e+05"), others as the shortest text
// that reads back as the same double ("1.5", "1e+300").
std::string LabelText(double y) {
  char buf[32];
  if (y == std::trunc(y) && std::fabs(y) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", y);
    return buf;
  }
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, y);
  return ec == std::errc() ? std::string(buf, end) : "?";
}

// Labels come from files, so each is checked as a double before any cast: casting 1e300
// or 2^63 to int64 is undefined behaviour. The most classes a label may imply; a model
// that wide would not fit anyway (architecture.cc bounds widths by 2^31 too).
constexpr double kMaxClasses = 2147483648.0;  // 2^31
// Class count = max label + 1, so one stray label decides the model's width (and its
// memory): a label of 10^5 among 0..9 trained a 100,001-class model. More unused classes
// than this, below the largest label, is an error unless the spec's "out" gives the width.
constexpr int64_t kMaxUnusedClasses = 1024;

// "label 1.5 of id 3": the value and the id (what the user searches for); messages add
// the row.
std::string WhichLabel(const io::Dataset& data, int64_t row) {
  return "label " + LabelText(data.y[row]) + " of id " + std::to_string(data.ids[row]);
}

// Throws unless label `row` is an integer in [0, classes).
void CheckClassLabel(const io::Dataset& data, int64_t row, double classes, LossKind loss) {
  const double y = data.y[row];
  if (y != std::trunc(y))  // NaN and Inf were refused when the data was read
    Fail(data.path, ": ", WhichLabel(data, row), " is not an integer (row ", row, "): loss ",
         Name(loss), " takes class labels 0, 1, 2, ...");
  if (y < 0 || y >= classes)
    Fail(data.path, ": ", WhichLabel(data, row), " is out of range [0, ", LabelText(classes),
         ") for loss ", Name(loss), " (row ", row, ")");
}

const io::Array& Need(const io::SafetensorsFile& file, const std::string& name,
                      const std::string& path) {
  const io::Array* a = file.Find(name);
  if (!a)
    Fail(path, ": the spec names tensor \"", Escape(name), "\" but the file has no such tensor");
  if (!io::IsFloating(a->dtype))
    Fail(path, ": tensor \"", Escape(name), "\" has dtype ", io::DTypeName(a->dtype),
         ": parameters must be F16, BF16, F32 or F64");
  return *a;
}

}  // namespace

Model LoadModel(const std::string& path, const std::optional<std::string>& spec_path) {
  io::SafetensorsFile file = io::ReadSafetensors(path);
  io::ModelSpec spec;
  if (spec_path) {
    spec = io::ReadSpecFile(*spec_path);
  } else {
    auto it = file.metadata.find("lethe");
    if (it == file.metadata.end())
      Fail(path, ": no architecture spec (no \"lethe\" key in __metadata__); pass --spec FILE");
    spec = io::ModelSpec::Parse(it->second, path + ": embedded spec");
  }

  // First pass: widths and shapes.
  std::vector<int64_t> widths;
  int64_t input_dim = -1, width = -1;
  std::set<std::string> used;
  std::optional<io::DType> dtype;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const io::LayerSpec& ls = spec.layers[i];
    if (ls.type != io::LayerSpec::Type::kLinear) continue;
    const io::Array& w = Need(file, ls.weight, path);
    if (w.shape.size() != 2)
      Fail(path, ": tensor \"", Escape(ls.weight), "\" has shape ", ShapeString(w.shape),
           ": a linear weight must be [out, in]");
    if (input_dim < 0) input_dim = w.shape[1];
    if (width >= 0 && w.shape[1] != width)
      Fail(path, ": layer ", i, " (linear) takes ", w.shape[1], " inputs but the previous layer has ",
           width, " outputs");
    width = w.shape[0];
    widths.push_back(width);
    used.insert(ls.weight);
    for (const io::Array* a : {&w}) {
      if (dtype && *dtype != a->dtype)
        Fail(path, ": tensors mix dtypes ", io::DTypeName(*dtype), " and ", io::DTypeName(a->dtype));
      dtype = a->dtype;
    }
    if (!ls.bias.empty()) {
      const io::Array& b = Need(file, ls.bias, path);
      if (b.shape.size() != 1 || b.shape[0] != width)
        Fail(path, ": tensor \"", Escape(ls.bias), "\" has shape ", ShapeString(b.shape), ", expected [",
             width, "]");
      if (b.dtype != *dtype)
        Fail(path, ": tensors mix dtypes ", io::DTypeName(*dtype), " and ", io::DTypeName(b.dtype));
      used.insert(ls.bias);
    }
  }
  for (const auto& [name, array] : file.tensors)
    if (!used.count(name)) Fail(path, ": tensor \"", Escape(name), "\" is not used by the spec");

  Model model;
  if (auto it = file.metadata.find("lethe_forgotten"); it != file.metadata.end())
    model.forgotten = ForgetHistory::Parse(it->second, path);
  model.arch = Architecture::Build(spec, input_dim, widths, path);
  model.dtype = *dtype;
  ResizeChecked(model.theta, model.arch.num_params, path + ": parameters");
  size_t j = 0;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const io::LayerSpec& ls = spec.layers[i];
    const LayerShape& shape = model.arch.layers[i];
    if (!shape.is_linear()) continue;
    ++j;
    std::vector<double> w = file.Find(ls.weight)->ToDouble(path + ": " + ls.weight);
    std::copy(w.begin(), w.end(), model.theta.begin() + shape.weight_offset);
    if (shape.bias_offset >= 0) {
      std::vector<double> b = file.Find(ls.bias)->ToDouble(path + ": " + ls.bias);
      std::copy(b.begin(), b.end(), model.theta.begin() + shape.bias_offset);
    }
  }
  for (double v : model.theta)
    if (!std::isfinite(v)) Fail(path, ": parameters contain NaN or Inf");
  return model;
}

void SaveModel(const std::string& path, const Model& model) {
  io::SafetensorsFile file;
  const Architecture& arch = model.arch;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const LayerShape& shape = arch.layers[i];
    if (!shape.is_linear()) continue;
    const io::LayerSpec& ls = arch.spec.layers[i];
    auto begin = model.theta.begin() + shape.weight_offset;
    file.tensors.emplace_back(
        ls.weight, io::Array::FromDouble(std::vector<double>(begin, begin + shape.out * shape.in),
                                         {shape.out, shape.in}, model.dtype));
    if (shape.bias_offset >= 0) {
      auto b = model.theta.begin() + shape.bias_offset;
      file.tensors.emplace_back(
          ls.bias, io::Array::FromDouble(std::vector<double>(b, b + shape.out), {shape.out},
                                         model.dtype));
    }
  }
  // Record every width in the embedded spec, so the file alone can be retrained from.
  io::ModelSpec spec = arch.spec;
  for (size_t i = 0; i < spec.layers.size(); ++i)
    if (arch.layers[i].is_linear()) spec.layers[i].out = arch.layers[i].out;
  file.metadata["lethe"] = spec.ToJson();
  file.metadata["format"] = "pt";
  if (!model.forgotten.empty()) file.metadata["lethe_forgotten"] = model.forgotten.ToJson();
  io::WriteSafetensors(path, file);
}

int64_t OutputWidthForData(LossKind loss, const io::Dataset& data) {
  switch (loss) {
    case LossKind::kCrossEntropy: {
      if (data.target_width != 1)
        Fail(data.path, ": y must be one label per example for loss ", Name(loss));
      int64_t max_row = 0;
      for (int64_t i = 0; i < data.n; ++i) {
        CheckClassLabel(data, i, kMaxClasses, loss);
        if (data.y[i] > data.y[max_row]) max_row = i;
      }
      const int64_t classes = static_cast<int64_t>(data.y[max_row]) + 1;  // checked above
      std::unordered_set<int64_t> distinct;
      for (double y : data.y) distinct.insert(static_cast<int64_t>(y));
      const int64_t unused = classes - static_cast<int64_t>(distinct.size());
      if (unused > kMaxUnusedClasses)
        Fail(data.path, ": ", WhichLabel(data, max_row), " (row ", max_row, ") would make ",
             classes, " classes, but only ", distinct.size(), " distinct labels occur in ", data.n,
             " rows (", unused, " classes unused): a stray label? If the model really has ",
             classes, " outputs, give the last linear layer \"out\": ", classes, " in the spec");
      return classes;
    }
    case LossKind::kLogistic:
      return 1;
    case LossKind::kMse:
      return data.target_width;
  }
  return 1;
}

Model InitializeModel(const io::ModelSpec& spec, const io::Dataset& data, uint64_t seed,
                      io::DType dtype) {
  Model model;
  // The data decide the last width only where the spec does not ("out" wins, so a
  // model can have classes that the data do not use).
  int64_t last_out = 0;
  for (const io::LayerSpec& ls : spec.layers)
    if (ls.type == io::LayerSpec::Type::kLinear) last_out = ls.out;
  const int64_t output_width = last_out > 0 ? last_out : OutputWidthForData(spec.loss, data);
  model.arch = Architecture::FromSpec(spec, data.d, output_width, data.path + " with the spec");
  model.dtype = dtype;
  ResizeChecked(model.theta, model.arch.num_params, data.path + " with the spec: parameters");
  std::mt19937_64 rng(seed);
  // 53 random bits → a double uniform in [0, 1).
  auto uniform = [&rng]() { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  for (const LayerShape& shape : model.arch.layers) {
    if (!shape.is_linear()) continue;
    const double bound = 1.0 / std::sqrt(static_cast<double>(shape.in));
    for (int64_t k = 0; k < shape.out * shape.in; ++k)
      model.theta[shape.weight_offset + k] = (2 * uniform() - 1) * bound;
    if (shape.bias_offset >= 0)
      for (int64_t k = 0; k < shape.out; ++k)
        model.theta[shape.bias_offset + k] = (2 * uniform() - 1) * bound;
  }
  return model;
}

void CheckDataMatchesModel(const Architecture& arch, const io::Dataset& data) {
  // Integer X are token ids, which only an embedding layer reads (none exists yet).
  if (data.integer_features)
    Fail(data.path, ": X has an integer dtype (token ids) but the model does not start with an "
         "embedding layer; store features as float32 or float64");
  if (data.d != arch.input_dim) {
    // pandas' to_csv writes its index as an unnamed first column unless index=False.
    std::string hint;
    if (data.index_like_column && data.d == arch.input_dim + 1)
      hint = "; its first column " + Quote(*data.index_like_column) + " holds 0, 1, ..., " +
             std::to_string(data.n - 1) +
             ", probably the index pandas writes (save with to_csv(index=False), or pass "
             "--id-column to use it as the ids)";
    Fail(data.path, ": X has ", data.d, " features per example but the model's first layer takes ",
         arch.input_dim, hint);
  }
  switch (arch.spec.loss) {
    case LossKind::kCrossEntropy:
    case LossKind::kLogistic: {
      const int64_t classes = arch.spec.loss == LossKind::kLogistic ? 2 : arch.output_dim;
      if (data.target_width != 1)
        Fail(data.path, ": y must be one label per example for loss ", Name(arch.spec.loss));
      for (int64_t i = 0; i < data.n; ++i)
        CheckClassLabel(data, i, static_cast<double>(classes), arch.spec.loss);
      break;
    }
    case LossKind::kMse:
      if (data.target_width != arch.output_dim)
        Fail(data.path, ": y has ", data.target_width, " targets per example but the model has ",
             arch.output_dim, " outputs");
      break;
  }
}

}  // namespace lethe
