#include "engine/model.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <unordered_set>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "engine/layers/plan.h"
#include "io/safetensors.h"

namespace lethe {
namespace {

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
  return ModelFromSafetensors(io::ReadSafetensors(path), path, spec_path);
}

Model ModelFromSafetensors(const io::SafetensorsFile& file, const std::string& path,
                           const std::optional<std::string>& spec_path) {
  io::ModelSpec spec;
  if (spec_path) {
    spec = io::ReadSpecFile(*spec_path);
  } else {
    auto it = file.metadata.find("lethe");
    if (it == file.metadata.end())
      Fail(path, ": no architecture spec (no \"lethe\" key in __metadata__); pass --spec FILE");
    spec = io::ModelSpec::Parse(it->second, path + ": embedded spec");
  }

  // The layers read their shapes from the file's tensors (and check them).
  ArchitectureSource source;
  source.file_shape = [&file](const std::string& name) -> std::optional<Shape> {
    const io::Array* a = file.Find(name);
    if (!a) return std::nullopt;
    return Shape(a->shape.begin(), a->shape.end());
  };
  Model model;
  // A sidecar spec's layer errors name both files.
  model.arch = Architecture::Build(spec, source, spec_path ? path + " with " + *spec_path : path);

  std::set<std::string> used;
  std::optional<io::DType> dtype;
  model.arch.ForEachTensor([&](const LayerShape&, const TensorInfo& t) {
    const io::Array& a = Need(file, t.name, path);
    if (dtype && *dtype != a.dtype)
      Fail(path, ": tensors mix dtypes ", io::DTypeName(*dtype), " and ", io::DTypeName(a.dtype));
    dtype = a.dtype;
    used.insert(t.name);
  });
  for (const auto& [name, array] : file.tensors)
    if (!used.count(name)) Fail(path, ": tensor \"", Escape(name), "\" is not used by the spec");

  if (auto it = file.metadata.find("lethe_forgotten"); it != file.metadata.end())
    model.forgotten = ForgetHistory::Parse(it->second, path);
  if (auto it = file.metadata.find("lethe_dp"); it != file.metadata.end())
    model.dp = privacy::DpRecord::Parse(it->second, path);
  if (auto it = file.metadata.find("lethe_certified"); it != file.metadata.end())
    model.certified = certified::CertifiedRecord::Parse(it->second, path);
  model.dtype = *dtype;
  ResizeChecked(model.theta, model.arch.num_params, path + ": parameters");
  model.arch.ForEachTensor([&](const LayerShape&, const TensorInfo& t) {
    std::vector<double> v = file.Find(t.name)->ToDouble(path + ": " + t.name);
    std::vector<double>& dst = t.trainable ? model.theta : model.arch.constants;
    std::copy(v.begin(), v.end(), dst.begin() + t.offset);
  });
  for (const std::vector<double>* v : {&model.theta, &model.arch.constants})
    for (double x : *v)
      if (!std::isfinite(x)) Fail(path, ": parameters contain NaN or Inf");
  return model;
}

void SaveModel(const std::string& path, const Model& model) {
  io::SafetensorsFile file;
  const Architecture& arch = model.arch;
  arch.ForEachTensor([&](const LayerShape&, const TensorInfo& t) {
    const std::vector<double>& src = t.trainable ? model.theta : arch.constants;
    auto begin = src.begin() + t.offset;
    file.tensors.emplace_back(
        t.name, io::Array::FromDouble(std::vector<double>(begin, begin + t.size()), t.shape,
                                      model.dtype));
  });
  // The resolved spec: every width recorded, so the file alone can be retrained from.
  file.metadata["lethe"] = arch.spec.ToJson();
  file.metadata["format"] = "pt";
  if (!model.forgotten.empty()) file.metadata["lethe_forgotten"] = model.forgotten.ToJson();
  if (model.dp) file.metadata["lethe_dp"] = model.dp->ToJson();
  if (model.certified) file.metadata["lethe_certified"] = model.certified->ToJson();
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
  ArchitectureSource source;
  // X's trailing shape ([n, H, W] → [H, W]; a 1-D X is one value per example).
  source.example_shape = data.example_shape.empty() ? Shape{data.d} : data.example_shape;
  // The data decide the last width only where the spec does not ("out" wins, so a model
  // can have classes that the data do not use), and only then are the labels read for it.
  source.data_output_width = [&] { return OutputWidthForData(spec.loss, data); };
  model.arch = Architecture::Build(
      spec, source, data.path + " with " + (spec.source.empty() ? "the spec" : spec.source));
  model.dtype = dtype;
  ResizeChecked(model.theta, model.arch.num_params, data.path + " with the spec: parameters");
  layers::Initializer init(seed, model.theta, model.arch.constants);
  std::function<void(const std::vector<LayerShape>&)> walk = [&](const std::vector<LayerShape>& ls) {
    for (const LayerShape& l : ls) {
      if (const layers::LayerType* t = layers::FindLayerType(l.type()); t && t->init)
        t->init(l, init);
      walk(l.body);
    }
  };
  walk(model.arch.layers);
  return model;
}

void CheckDataMatchesModel(const Architecture& arch, const io::Dataset& data) {
  // The dtype of X says what it holds: integer token ids for a model that reads ids (its first
  // layer has check_token_ids), float features for any other.
  const LayerShape& first = arch.layers.front();
  const layers::LayerType* type = layers::FindLayerType(first.type());
  const bool reads_ids = type && type->check_token_ids;
  if (data.integer_features && !reads_ids)
    Fail(data.path, ": X has an integer dtype (token ids) but the model's first layer is ",
         first.type(), ", which reads float features (only embedding_bag reads token ids; "
         "store features as float32 or float64)");
  if (!data.integer_features && reads_ids)
    Fail(data.path, ": X holds float features but the model's first layer is ", first.type(),
         ", which reads integer token ids (store X as int64 [n, L])");
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
  if (reads_ids && data.streamed)
    Fail(data.path, ": token ids (X of an integer dtype) cannot be streamed yet (--max-memory): "
                    "the id check reads X whole; raise --max-memory");
  if (reads_ids) type->check_token_ids(first, data.X.data(), data.n, data.path);
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
