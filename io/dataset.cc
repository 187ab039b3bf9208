#include "io/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <unordered_map>

#include "common/error.h"
#include "io/csv.h"
#include "io/npy.h"
#include "io/parse_number.h"

namespace lethe::io {
namespace {

// Reports the first repeated id as "duplicate id 17 (rows 3 and 9)".
void CheckUniqueIds(const std::vector<int64_t>& ids, const std::string& path) {
  std::unordered_map<int64_t, size_t> first_row;
  first_row.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto [it, inserted] = first_row.emplace(ids[i], i);
    if (!inserted) Fail(path, ": duplicate id ", ids[i], " (rows ", it->second, " and ", i, ")");
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

Dataset LoadNpz(const std::string& path) {
  std::map<std::string, Array> arrays = ReadNpz(path);
  const auto require = [&](const char* name) -> const Array& {
    const auto it = arrays.find(name);
    if (it == arrays.end()) Fail(path, ": missing array '", name, "'");
    return it->second;
  };
  Dataset ds;
  ds.path = path;

  const Array& X = require("X");
  if (X.dtype != DType::kF32 && X.dtype != DType::kF64)
    Fail(path, ": X must be float32 or float64, got ", DTypeName(X.dtype));
  if (X.shape.empty()) Fail(path, ": X must have at least one dimension, got a scalar");
  ds.n = X.shape[0];
  if (ds.n == 0) Fail(path, ": X has no rows (n = 0)");
  ds.d = X.NumElements() / ds.n;  // trailing dimensions flattened; 1 for a 1-D X
  if (ds.d == 0) Fail(path, ": X has no features (shape ", ShapeString(X.shape), ")");
  ds.X.resize(static_cast<size_t>(X.NumElements()));
  X.ToDouble(path + ": X", ds.X.data());
  if (const int64_t row = FirstNonFiniteRow(ds.X, ds.d); row >= 0)
    Fail(path, ": X contains NaN or Inf at row ", row);

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
    Fail(path, ": y contains NaN or Inf at row ", row);

  const auto ids = arrays.find("ids");
  if (ids == arrays.end()) {
    ds.ids.resize(static_cast<size_t>(ds.n));
    for (int64_t i = 0; i < ds.n; ++i) ds.ids[i] = i;
  } else {
    const Array& a = ids->second;
    if (a.dtype != DType::kI64 && a.dtype != DType::kI32)
      Fail(path, ": ids must be int64 or int32, got ", DTypeName(a.dtype));
    if (a.shape.size() != 1 || a.shape[0] != ds.n)
      Fail(path, ": ids must have shape [", ds.n, "], got ", ShapeString(a.shape));
    ds.ids = a.ToInt64(path + ": ids");
    CheckUniqueIds(ds.ids, path);
  }
  return ds;
}

size_t ColumnIndex(const CsvTable& table, const std::string& name, const std::string& path,
                   const char* option) {
  const auto it = std::find(table.header.begin(), table.header.end(), name);
  if (it == table.header.end()) Fail(path, ": no column '", name, "' (use ", option, ")");
  return static_cast<size_t>(it - table.header.begin());
}

Dataset LoadCsv(const std::string& path, const DatasetOptions& options) {
  const CsvTable table = ReadCsv(path);
  const size_t label = ColumnIndex(table, options.label_column, path, "--label-column");
  const bool has_id = !options.id_column.empty();
  const size_t id = has_id ? ColumnIndex(table, options.id_column, path, "--id-column") : 0;
  if (has_id && id == label) Fail(path, ": the id column cannot also be the label column");
  std::vector<size_t> features;
  for (size_t c = 0; c < table.header.size(); ++c)
    if (c != label && !(has_id && c == id)) features.push_back(c);

  Dataset ds;
  ds.path = path;
  ds.n = static_cast<int64_t>(table.rows.size());
  ds.d = static_cast<int64_t>(features.size());
  if (ds.n == 0) Fail(path, ": no data rows");
  if (ds.d == 0) Fail(path, ": no feature columns");
  ds.X.reserve(static_cast<size_t>(ds.n * ds.d));
  ds.y.reserve(static_cast<size_t>(ds.n));
  ds.ids.reserve(static_cast<size_t>(ds.n));
  const auto number = [&](size_t row, size_t column) {
    double v;
    if (!ParseDoubleField(table.rows[row][column], &v))
      Fail(path, ":", table.row_lines[row], ": column '", table.header[column],
           "': not a number: '", table.rows[row][column], "'");
    return v;
  };
  for (size_t r = 0; r < table.rows.size(); ++r) {
    for (size_t c : features) {
      ds.X.push_back(number(r, c));
      if (!std::isfinite(ds.X.back()))
        Fail(path, ": X contains NaN or Inf at row ", r, " (line ", table.row_lines[r], ")");
    }
    ds.y.push_back(number(r, label));
    if (!std::isfinite(ds.y.back()))
      Fail(path, ": y contains NaN or Inf at row ", r, " (line ", table.row_lines[r], ")");
    if (has_id) {
      int64_t value;
      if (!ParseInt64Field(table.rows[r][id], &value))
        Fail(path, ":", table.row_lines[r], ": column '", table.header[id], "': not an integer: '",
             table.rows[r][id], "'");
      ds.ids.push_back(value);
    } else {
      ds.ids.push_back(static_cast<int64_t>(r));
    }
  }
  ds.integer_targets =
      std::all_of(ds.y.begin(), ds.y.end(), [](double v) { return v == std::trunc(v); });
  if (has_id) CheckUniqueIds(ds.ids, path);
  return ds;
}

}  // namespace

Dataset LoadDataset(const std::string& path, const DatasetOptions& options) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext == ".npz") return LoadNpz(path);
  if (ext == ".csv") return LoadCsv(path, options);
  Fail(path, ": unsupported dataset format '", ext, "' (expected .npz or .csv)");
}

}  // namespace lethe::io
