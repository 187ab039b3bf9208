// Training and test data for the Python module: numpy arrays (or a file) seen as the
// engine's io::Dataset, without copying X where numpy already holds it as float32 or
// float64 in C order.
//
// The engine reads data in two places: the checks against a model (CheckDataMatchesModel:
// sizes, labels, token ids) and the upload to the backend (UploadData: X and y converted
// to the compute precision, a block of rows at a time). The checks read y and ids, which
// are small (n values) and held here as the io::Dataset's own; X is read only by the upload,
// which the module does from numpy's buffer (UploadRows), converting exactly as the CLI's
// path does (a file's float32 or float64 → double → T, i.e. float32 → T directly), so the
// device holds the same bits. Integer X (token ids for embedding_bag) is converted to
// doubles once, as the file reader does, since the token-id check reads it.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/forgotten.h"
#include "engine/objective.h"
#include "io/dataset.h"

namespace lethe::py_module {

namespace py = pybind11;

class Data {
 public:
  // X [n, ...] float32/float64 (viewed when C-contiguous and native-endian, else copied by
  // numpy into a contiguous array of its own dtype) or an integer dtype (token ids); y [n]
  // integer labels of any width or float [n] / [n, k] targets; ids [n] int32/int64 or None
  // (row indices). `name` stands for the path in error messages.
  static std::shared_ptr<Data> FromArrays(py::array X, py::array y, py::object ids,
                                          const std::string& name);
  // An .npz or .csv file, read as the CLI reads it.
  static std::shared_ptr<Data> FromFile(const std::string& path, const io::DatasetOptions& options);
  // Rows `rows` of `data` (in that order), X still viewed, not copied.
  static std::shared_ptr<Data> Subset(std::shared_ptr<const Data> data,
                                      const std::vector<int64_t>& rows);

  // n, d, y, ids, dtypes, path; its X is empty unless this object owns X as doubles.
  const io::Dataset& meta() const { return meta_; }
  // Whether X is numpy's own memory (no copy was made).
  bool zero_copy() const { return zero_copy_; }
  // The address of X's first element as the module reads it (tests check it is numpy's).
  uintptr_t x_address() const { return reinterpret_cast<uintptr_t>(x_); }

  // Uploads rows `rows` (all when empty) as the engine's UploadData does.
  template <typename T>
  DeviceData<T> Upload(kernels::Backend<T>& backend, const std::vector<int64_t>& rows = {}) const;

  // The data as an io::Dataset with X filled (a copy): for engine functions that take one
  // whole (the audit of compare).
  io::Dataset Materialize() const;

 private:
  io::Dataset meta_;
  std::shared_ptr<const Data> parent_;  // a subset reads its parent's X
  py::object array_;                    // the numpy array X views (kept alive)
  const void* x_ = nullptr;             // X's first row
  bool x_f32_ = false;                  // float32 elements, else double
  bool zero_copy_ = false;
  std::vector<int64_t> x_rows_;         // row of X for row i (empty: i)
  int64_t XRow(int64_t i) const { return x_rows_.empty() ? i : x_rows_[i]; }
};

// The rows of `data` not forgotten by `forgotten` (all when none is): what the CLI's
// ExcludeForgotten keeps, with its note as the returned string (empty when nothing is said).
std::shared_ptr<Data> ExcludeForgotten(const ForgetHistory& forgotten, std::shared_ptr<Data> data,
                                       const std::string& command, const std::string& model_name,
                                       std::string* note);

}  // namespace lethe::py_module
