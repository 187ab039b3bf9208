#include "engine/model.h"

#include <cmath>
#include <random>
#include <set>

#include "common/error.h"
#include "io/safetensors.h"

namespace lethe {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const io::Array& Need(const io::SafetensorsFile& file, const std::string& name,
                      const std::string& path) {
  const io::Array* a = file.Find(name);
  if (!a) Fail(path, ": the spec names tensor \"", name, "\" but the file has no such tensor");
  if (!io::IsFloating(a->dtype))
    Fail(path, ": tensor \"", name, "\" has dtype ", io::DTypeName(a->dtype),
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
      Fail(path, ": tensor \"", ls.weight, "\" has shape ", ShapeString(w.shape),
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
        Fail(path, ": tensor \"", ls.bias, "\" has shape ", ShapeString(b.shape), ", expected [",
             width, "]");
      if (b.dtype != *dtype)
        Fail(path, ": tensors mix dtypes ", io::DTypeName(*dtype), " and ", io::DTypeName(b.dtype));
      used.insert(ls.bias);
    }
  }
  for (const auto& [name, array] : file.tensors)
    if (!used.count(name)) Fail(path, ": tensor \"", name, "\" is not used by the spec");

  Model model;
  if (auto it = file.metadata.find("lethe_forgotten"); it != file.metadata.end())
    model.forgotten = ForgetHistory::Parse(it->second, path);
  model.arch = Architecture::Build(spec, input_dim, widths, path);
  model.dtype = *dtype;
  model.theta.resize(model.arch.num_params);
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
      double max_label = 0;
      for (double y : data.y) max_label = std::max(max_label, y);
      return static_cast<int64_t>(max_label) + 1;
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
  model.arch = Architecture::FromSpec(spec, data.d, OutputWidthForData(spec.loss, data),
                                      data.path + " with the spec");
  model.dtype = dtype;
  model.theta.resize(model.arch.num_params);
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
  if (data.d != arch.input_dim)
    Fail(data.path, ": X has ", data.d, " features per example but the model's first layer takes ",
         arch.input_dim);
  switch (arch.spec.loss) {
    case LossKind::kCrossEntropy:
    case LossKind::kLogistic: {
      const int64_t classes = arch.spec.loss == LossKind::kLogistic ? 2 : arch.output_dim;
      if (data.target_width != 1)
        Fail(data.path, ": y must be one label per example for loss ", Name(arch.spec.loss));
      for (int64_t i = 0; i < data.n; ++i) {
        const double y = data.y[i];
        if (y != std::floor(y) || y < 0 || y >= classes)
          Fail(data.path, ": label ", y, " of id ", data.ids[i], " is out of range [0, ", classes,
               ") for loss ", Name(arch.spec.loss));
      }
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
