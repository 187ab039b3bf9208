#include "io/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <unordered_map>

#include "common/checked_alloc.h"
#include "common/error.h"
#include "common/quote.h"
#include "io/csv.h"
#include "io/dataset_arrays.h"
#include "io/npy.h"
#include "io/parse_number.h"

namespace lethe::io {
namespace {

// Reports the first repeated id as "duplicate id 17 (rows 3 and 9)".
void CheckUniqueIds(const std::vector<int64_t>& ids, const std::string& path,
                    int64_t row_offset = 0) {
  std::unordered_map<int64_t, size_t> first_row;
  first_row.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto [it, inserted] = first_row.emplace(ids[i], i);
    if (!inserted)
      Fail(path, ": duplicate id ", ids[i], " (rows ", row_offset + static_cast<int64_t>(it->second),
           " and ", row_offset + static_cast<int64_t>(i), ")");
  }
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Row of the first non-finite value in a [rows, width] row-major matrix, or -1.
template <typename Vector>
int64_t FirstNonFiniteRow(const Vector& values, int64_t width) {
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) return static_cast<int64_t>(i) / width;
  return -1;
}

// x_values false: X's dtype and shape only (its bytes may be absent), for a streamed X.
Dataset NpzArraysToDataset(const std::string& path, std::map<std::string, Array> arrays,
                           int64_t first_row, bool x_values = true) {
  const auto require = [&](const char* name) -> const Array& {
    const auto it = arrays.find(name);
    if (it == arrays.end()) Fail(path, ": missing array '", name, "'");
    return it->second;
  };
  Dataset ds;
  ds.path = path;

  const Array& X = require("X");
  // Booleans are neither features (the engine's data are float) nor token ids.
  ds.integer_features = IsInteger(X.dtype) && X.dtype != DType::kBool;
  if (X.dtype != DType::kF32 && X.dtype != DType::kF64 && !ds.integer_features)
    Fail(path, ": X must be float32 or float64 (features) or an integer dtype (token ids), got ",
         DTypeName(X.dtype));
  if (X.shape.empty()) Fail(path, ": X must have at least one dimension, got a scalar");
  ds.n = X.shape[0];
  ds.example_shape.assign(X.shape.begin() + 1, X.shape.end());
  if (ds.n == 0) Fail(path, ": X has no rows (n = 0)");
  ds.d = X.NumElements() / ds.n;  // trailing dimensions flattened; 1 for a 1-D X
  if (ds.d == 0) Fail(path, ": X has no features (shape ", ShapeString(X.shape), ")");
  if (x_values) {
    ResizeChecked(ds.X, static_cast<uint64_t>(X.NumElements()), path + ": X as doubles");
    X.ToDouble(path + ": X", ds.X.data());
    if (const int64_t row = FirstNonFiniteRow(ds.X, ds.d); row >= 0)
      Fail(path, ": X contains NaN or Inf at row ", first_row + row);
  }

  const Array& y = require("y");
  if (y.shape.empty() || y.shape.size() > 2)
    Fail(path, ": y must have shape [n] or [n, k], got ", ShapeString(y.shape));
  if (y.shape[0] != ds.n) Fail(path, ": y has ", y.shape[0], " rows but X has ", ds.n);
  ds.integer_targets = IsInteger(y.dtype);
  if (ds.integer_targets && y.shape.size() != 1)
    Fail(path, ": integer y (class labels) must have shape [n], got ", ShapeString(y.shape));
  ds.target_width = y.shape.size() == 2 ? y.shape[1] : 1;
  if (ds.target_width == 0) Fail(path, ": y has no targets (shape ", ShapeString(y.shape), ")");
  ds.y = y.ToDouble(path + ": y");
  if (const int64_t row = FirstNonFiniteRow(ds.y, ds.target_width); row >= 0)
    Fail(path, ": y contains NaN or Inf at row ", first_row + row);

  const auto ids = arrays.find("ids");
  if (ids == arrays.end()) {
    ds.ids.resize(static_cast<size_t>(ds.n));
    for (int64_t i = 0; i < ds.n; ++i) ds.ids[i] = first_row + i;
  } else {
    const Array& a = ids->second;
    if (a.dtype != DType::kI64 && a.dtype != DType::kI32)
      Fail(path, ": ids must be int64 or int32, got ", DTypeName(a.dtype));
    if (a.shape.size() != 1 || a.shape[0] != ds.n)
      Fail(path, ": ids must have shape [", ds.n, "], got ", ShapeString(a.shape));
    ds.ids = a.ToInt64(path + ": ids");
    CheckUniqueIds(ds.ids, path, first_row);
  }
  return ds;
}

Dataset LoadNpz(const std::string& path) {
  // Only the arrays lethe uses are inflated: other members cost no memory.
  return NpzArraysToDataset(path, ReadNpz(path, std::set<std::string>{"X", "y", "ids"}), 0);
}

size_t ColumnIndex(const std::vector<std::string>& header, const std::string& name,
                   const std::string& path, const char* option) {
  const auto it = std::find(header.begin(), header.end(), name);
  if (it == header.end()) Fail(path, ": no column ", Quote(name), " (use ", option, ")");
  return static_cast<size_t>(it - header.begin());
}

// Rows are converted as the reader hands them out, so memory is the file's text plus X:
// no table of strings is ever built. With `keep` (LoadCsvRows), every row is parsed and
// checked alike but only the features of the rows keep(id) selects are kept, into
// *kept_X, their file rows into *kept_rows; ds.X stays empty (ids and y hold every row).
Dataset LoadCsv(const std::string& path, const DatasetOptions& options,
                const std::function<bool(int64_t)>* keep = nullptr,
                HostVector<double>* kept_X = nullptr, std::vector<int64_t>* kept_rows = nullptr) {
  CsvReader reader(path);
  const std::vector<std::string>& header = reader.header();
  const size_t label = ColumnIndex(header, options.label_column, path, "--label-column");
  const bool has_id = !options.id_column.empty();
  const size_t id = has_id ? ColumnIndex(header, options.id_column, path, "--id-column") : 0;
  if (has_id && id == label) Fail(path, ": the id column cannot also be the label column");
  std::vector<size_t> features;
  for (size_t c = 0; c < header.size(); ++c)
    if (c != label && !(has_id && c == id)) features.push_back(c);

  Dataset ds;
  ds.path = path;
  ds.d = static_cast<int64_t>(features.size());
  if (ds.d == 0) Fail(path, ": no feature columns");
  // Every value takes at least two bytes of text (a digit and a separator), which bounds
  // the reservation by the file, whatever its line count claims.
  const uint64_t max_rows = std::min<uint64_t>(reader.MaxRows(), reader.file_size() / 2 + 1);
  if (!keep)
    ReserveChecked(ds.X, std::min<uint64_t>(max_rows * static_cast<uint64_t>(ds.d),
                                            reader.file_size() / 2 + 1),
                   path + ": X");
  ReserveChecked(ds.y, max_rows, path + ": y");
  ReserveChecked(ds.ids, max_rows, path + ": ids");
  std::vector<std::string> fields;
  int64_t line = 0;
  const auto number = [&](size_t column) {
    double v;
    if (!ParseDoubleField(fields[column], &v))
      Fail(path, ":", line, ": column ", Quote(header[column]), ": not a number: ",
           Quote(fields[column]));
    return v;
  };
  // Whether the first feature column counts 0, 1, ..., n-1 (pandas' index; the hint below).
  bool counts = true;
  std::vector<double> row(static_cast<size_t>(ds.d));
  for (int64_t r = 0; reader.Next(&fields, &line); ++r) {
    for (size_t k = 0; k < features.size(); ++k) {
      row[k] = number(features[k]);
      if (!std::isfinite(row[k]))
        Fail(path, ": X contains NaN or Inf at row ", r, " (line ", line, ")");
    }
    counts = counts && row[0] == static_cast<double>(r);
    ds.y.push_back(number(label));
    if (!std::isfinite(ds.y.back()))
      Fail(path, ": y contains NaN or Inf at row ", r, " (line ", line, ")");
    if (has_id) {
      int64_t value;
      if (!ParseInt64Field(fields[id], &value))
        Fail(path, ":", line, ": column ", Quote(header[id]), ": not an integer: ",
             Quote(fields[id]));
      ds.ids.push_back(value);
    } else {
      ds.ids.push_back(r);
    }
    HostVector<double>& X = keep ? *kept_X : ds.X;
    if (!keep || (*keep)(ds.ids.back())) {
      X.insert(X.end(), row.begin(), row.end());
      if (keep) kept_rows->push_back(r);
    }
    ++ds.n;
  }
  if (ds.n == 0) Fail(path, ": no data rows");
  ds.example_shape = {ds.d};
  ds.integer_targets =
      std::all_of(ds.y.begin(), ds.y.end(), [](double v) { return v == std::trunc(v); });
  if (has_id) CheckUniqueIds(ds.ids, path);
  // pandas writes its index as a first column named "" (or "Unnamed: 0" once read and
  // written again) unless told index=False; remember it for the feature-count hint.
  const std::string& first = header[features[0]];
  if (features[0] == 0 && (first.empty() || first == "Unnamed: 0") && counts)
    ds.index_like_column = first;
  return ds;
}

}  // namespace

Dataset DatasetFromArrays(const std::string& path, std::map<std::string, Array> arrays,
                          int64_t first_row) {
  return NpzArraysToDataset(path, std::move(arrays), first_row);
}

Dataset LoadCsvRows(const std::string& path, const DatasetOptions& options,
                    const std::function<bool(int64_t)>& keep, HostVector<double>* X,
                    std::vector<int64_t>* rows) {
  return LoadCsv(path, options, &keep, X, rows);
}

Dataset NpzDatasetMeta(const std::string& path, const npy::Header& x) {
  std::map<std::string, Array> arrays = ReadNpz(path, std::set<std::string>{"y", "ids"});
  Array shape_only;
  shape_only.dtype = x.dtype;
  shape_only.shape = x.shape;
  arrays.emplace("X", std::move(shape_only));
  return NpzArraysToDataset(path, std::move(arrays), 0, false);
}

Dataset LoadDataset(const std::string& path, const DatasetOptions& options) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext == ".npz") return LoadNpz(path);
  if (ext == ".csv") return LoadCsv(path, options);
  Fail(path, ": unsupported dataset format '", ext, "' (expected .npz or .csv)");
}

}  // namespace lethe::io
