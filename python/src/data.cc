#include "python/src/data.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "common/error.h"

namespace lethe::py_module {
namespace {

std::string ShapeString(const py::array& a) {
  std::string s = "[";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + "]";
}

std::string DTypeString(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Row of the first non-finite value of a [rows, width] row-major buffer, or -1.
template <typename S>
int64_t FirstNonFiniteRow(const S* values, int64_t count, int64_t width) {
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(values[i])) return i / width;
  return -1;
}

// As io/dataset.cc's: "duplicate id 17 (rows 3 and 9)".
void CheckUniqueIds(const std::vector<int64_t>& ids, const std::string& name) {
  std::unordered_map<int64_t, size_t> first_row;
  first_row.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto [it, inserted] = first_row.emplace(ids[i], i);
    if (!inserted) Fail(name, ": duplicate id ", ids[i], " (rows ", it->second, " and ", i, ")");
  }
}

}  // namespace

std::shared_ptr<Data> Data::FromArrays(py::array X, py::array y, py::object ids_object,
                                       const std::string& name) {
  auto data = std::make_shared<Data>();
  io::Dataset& ds = data->meta_;
  ds.path = name;
  // The same rules, in the same order and words, as an .npz's arrays (io/dataset.cc).
  const char kind = X.dtype().kind();
  ds.integer_features = kind == 'i' || kind == 'u';
  const bool f32 = kind == 'f' && X.itemsize() == 4, f64 = kind == 'f' && X.itemsize() == 8;
  if (!f32 && !f64 && !ds.integer_features)
    Fail(name, ": X must be float32 or float64 (features) or an integer dtype (token ids), got ",
         DTypeString(X));
  if (X.ndim() == 0) Fail(name, ": X must have at least one dimension, got a scalar");
  ds.n = X.shape(0);
  for (py::ssize_t i = 1; i < X.ndim(); ++i) ds.example_shape.push_back(X.shape(i));
  if (ds.n == 0) Fail(name, ": X has no rows (n = 0)");
  ds.d = static_cast<int64_t>(X.size()) / ds.n;
  if (ds.d == 0) Fail(name, ": X has no features (shape ", ShapeString(X), ")");
  if (ds.integer_features) {
    // Token ids: doubles, as the file reader makes them (the token-id check reads them).
    auto converted = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(X);
    if (!converted) throw py::error_already_set();
    ds.X.assign(converted.data(), converted.data() + converted.size());
    data->x_ = ds.X.data();
  } else {
    // A C-contiguous, aligned, native-endian array is used where it is; any other layout
    // (a slice with strides, Fortran order, a byte-swapped dtype) is copied by numpy into
    // a C-order array of the same precision, never read through the wrong strides.
    py::array contiguous =
        f32 ? py::array(py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(X))
            : py::array(py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(X));
    if (!contiguous) throw py::error_already_set();
    data->zero_copy_ = contiguous.data() == X.data();
    data->array_ = contiguous;
    data->x_ = contiguous.data();
    data->x_f32_ = f32;
  }
  const int64_t bad = data->x_f32_ ? FirstNonFiniteRow(static_cast<const float*>(data->x_), ds.n * ds.d, ds.d)
                                   : FirstNonFiniteRow(static_cast<const double*>(data->x_), ds.n * ds.d, ds.d);
  if (bad >= 0) Fail(name, ": X contains NaN or Inf at row ", bad);

  const char ykind = y.dtype().kind();
  if (ykind != 'f' && ykind != 'i' && ykind != 'u' && ykind != 'b')
    Fail(name, ": y must be integer labels or float targets, got ", DTypeString(y));
  if (y.ndim() == 0 || y.ndim() > 2)
    Fail(name, ": y must have shape [n] or [n, k], got ", ShapeString(y));
  if (y.shape(0) != ds.n) Fail(name, ": y has ", y.shape(0), " rows but X has ", ds.n);
  ds.integer_targets = ykind != 'f';
  if (ds.integer_targets && y.ndim() != 1)
    Fail(name, ": integer y (class labels) must have shape [n], got ", ShapeString(y));
  ds.target_width = y.ndim() == 2 ? y.shape(1) : 1;
  if (ds.target_width == 0) Fail(name, ": y has no targets (shape ", ShapeString(y), ")");
  // Labels of every integer width, and float targets, as doubles (n values: small).
  auto yd = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(y);
  if (!yd) throw py::error_already_set();
  ds.y.assign(yd.data(), yd.data() + yd.size());
  if (const int64_t row = FirstNonFiniteRow(ds.y.data(), static_cast<int64_t>(ds.y.size()), ds.target_width);
      row >= 0)
    Fail(name, ": y contains NaN or Inf at row ", row);

  if (ids_object.is_none()) {
    ds.ids.resize(static_cast<size_t>(ds.n));
    for (int64_t i = 0; i < ds.n; ++i) ds.ids[i] = i;
  } else {
    py::array ids = py::array::ensure(ids_object);
    if (!ids) Fail(name, ": ids must be an array of int64 or int32");
    const bool ok = ids.dtype().kind() == 'i' && (ids.itemsize() == 8 || ids.itemsize() == 4);
    if (!ok) Fail(name, ": ids must be int64 or int32, got ", DTypeString(ids));
    if (ids.ndim() != 1 || ids.shape(0) != ds.n)
      Fail(name, ": ids must have shape [", ds.n, "], got ", ShapeString(ids));
    auto ids64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(ids);
    if (!ids64) throw py::error_already_set();
    ds.ids.assign(ids64.data(), ids64.data() + ids64.size());
    CheckUniqueIds(ds.ids, name);
  }
  return data;
}

std::shared_ptr<Data> Data::FromFile(const std::string& path, const io::DatasetOptions& options) {
  auto data = std::make_shared<Data>();
  data->meta_ = io::LoadDataset(path, options);
  data->x_ = data->meta_.X.data();
  return data;
}

std::shared_ptr<Data> Data::Subset(std::shared_ptr<const Data> parent,
                                   const std::vector<int64_t>& rows) {
  auto data = std::make_shared<Data>();
  const io::Dataset& from = parent->meta_;
  io::Dataset& ds = data->meta_;
  ds.path = from.path;
  ds.n = static_cast<int64_t>(rows.size());
  ds.d = from.d;
  ds.example_shape = from.example_shape;
  ds.integer_features = from.integer_features;
  ds.target_width = from.target_width;
  ds.integer_targets = from.integer_targets;
  ds.index_like_column = from.index_like_column;
  ds.y.reserve(rows.size() * from.target_width);
  for (int64_t r : rows) {
    ds.y.insert(ds.y.end(), from.y.begin() + r * from.target_width,
                from.y.begin() + (r + 1) * from.target_width);
    ds.ids.push_back(from.ids[r]);
    data->x_rows_.push_back(parent->XRow(r));
  }
  data->x_ = parent->x_;
  data->x_f32_ = parent->x_f32_;
  data->zero_copy_ = parent->zero_copy_;
  data->parent_ = std::move(parent);
  return data;
}

template <typename T>
DeviceData<T> Data::Upload(kernels::Backend<T>& backend, const std::vector<int64_t>& rows) const {
  // engine/objective.cc's UploadData, reading X from its source: the same block of rows
  // through the same small host buffer, each value converted once to T.
  const io::Dataset& data = meta_;
  const bool all = rows.empty();
  const int64_t n = all ? data.n : static_cast<int64_t>(rows.size());
  DeviceData<T> out;
  out.X = backend.Allocate(n, data.d);
  out.Y = backend.Allocate(n, data.target_width);
  const int64_t width = std::max<int64_t>(1, std::max(data.d, data.target_width));
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 16) / width);
  std::vector<T> buffer(static_cast<size_t>(std::min(n, block) * width));
  auto upload = [&](auto source_row, int64_t cols, kernels::Matrix<T> dst) {
    for (int64_t b = 0; b < n; b += block) {
      const int64_t count = std::min(block, n - b);
      for (int64_t i = 0; i < count; ++i) {
        const auto* from = source_row(all ? b + i : rows[b + i]);
        std::copy(from, from + cols, buffer.begin() + i * cols);
      }
      backend.Upload(buffer.data(), dst.Rows(b, count));
    }
  };
  if (x_f32_)
    upload([&](int64_t r) { return static_cast<const float*>(x_) + XRow(r) * data.d; }, data.d, out.X);
  else
    upload([&](int64_t r) { return static_cast<const double*>(x_) + XRow(r) * data.d; }, data.d, out.X);
  upload([&](int64_t r) { return data.y.data() + r * data.target_width; }, data.target_width, out.Y);
  return out;
}

io::Dataset Data::Materialize() const {
  io::Dataset ds = meta_;
  ds.X.resize(static_cast<size_t>(ds.n * ds.d));
  for (int64_t i = 0; i < ds.n; ++i) {
    double* to = ds.X.data() + i * ds.d;
    if (x_f32_) {
      const float* from = static_cast<const float*>(x_) + XRow(i) * ds.d;
      std::copy(from, from + ds.d, to);
    } else {
      const double* from = static_cast<const double*>(x_) + XRow(i) * ds.d;
      std::copy(from, from + ds.d, to);
    }
  }
  return ds;
}

std::shared_ptr<Data> ExcludeForgotten(const ForgetHistory& forgotten, std::shared_ptr<Data> data,
                                       const std::string& command, const std::string& model_name,
                                       std::string* note) {
  note->clear();
  if (forgotten.ids.empty()) return data;
  const std::vector<int64_t> rows = RowsNotForgotten(data->meta(), forgotten);
  const int64_t left_out = data->meta().n - static_cast<int64_t>(rows.size());
  const size_t requests = forgotten.requests.size();
  // tools/lethe/forgotten_data.cc's note, word for word.
  *note = command + ": note: " + model_name + " has forgotten " + std::to_string(forgotten.ids.size()) +
          " id(s) in " + std::to_string(requests) + " deletion request" + (requests == 1 ? "" : "s") + "; ";
  if (left_out == 0) {
    *note += "none of them is in " + data->meta().path;
    return data;
  }
  *note += std::to_string(left_out) + " of them are in " + data->meta().path +
           " and are left out of it (" + std::to_string(rows.size()) +
           " examples remain; lethe inspect lists them)";
  return Data::Subset(data, rows);
}

template DeviceData<float> Data::Upload<float>(kernels::Backend<float>&, const std::vector<int64_t>&) const;
template DeviceData<double> Data::Upload<double>(kernels::Backend<double>&, const std::vector<int64_t>&) const;

}  // namespace lethe::py_module
