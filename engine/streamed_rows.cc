#include "engine/streamed_rows.h"

#include <algorithm>
#include <type_traits>

#include "common/error.h"

namespace lethe {

template <typename T>
StreamedRows<T>::StreamedRows(kernels::Backend<T>& backend, std::shared_ptr<const io::StreamedX> x,
                              std::vector<int64_t> file_rows)
    : backend_(backend), x_(std::move(x)), file_rows_(std::move(file_rows)) {
  for (int64_t r : file_rows_) LETHE_CHECK(r >= 0 && r < x_->rows());
}

template <typename T>
int64_t StreamedRows<T>::rows() const {
  return file_rows_.empty() ? x_->rows() : static_cast<int64_t>(file_rows_.size());
}

template <typename T>
void StreamedRows<T>::Read(int64_t begin, int64_t count, kernels::Matrix<T> out) {
  LETHE_CHECK(begin >= 0 && count >= 0 && begin + count <= rows());
  LETHE_CHECK(out.rows() == count && out.cols() == cols());
  if (count == 0) return;
  const int64_t d = cols();
  // In f64 the doubles are the values uploaded; in f32 they are rounded as UploadData
  // rounds them (double → float).
  double* doubles;
  if constexpr (std::is_same_v<T, double>) {
    values_.resize(static_cast<size_t>(count * d));
    doubles = values_.data();
  } else {
    doubles_.resize(static_cast<size_t>(count * d));
    values_.resize(doubles_.size());
    doubles = doubles_.data();
  }
  auto file_row = [&](int64_t i) { return file_rows_.empty() ? begin + i : file_rows_[begin + i]; };
  for (int64_t i = 0; i < count;) {
    int64_t run = 1;  // consecutive file rows: one read
    while (i + run < count && file_row(i + run) == file_row(i) + run) ++run;
    x_->ReadRows(file_row(i), run, doubles + i * d);
    i += run;
  }
  if constexpr (!std::is_same_v<T, double>) std::copy(doubles_.begin(), doubles_.end(), values_.begin());
  backend_.Upload(values_.data(), out);
  this->rows_read_ += count;
}

template <typename T>
DeviceData<T> UploadStreamed(kernels::Backend<T>& backend, const io::Dataset& data,
                             const std::vector<int64_t>& rows) {
  const io::Dataset& meta = data;
  LETHE_CHECK(meta.streamed && meta.X.empty() && meta.streamed->cols() == meta.d);
  const std::vector<int64_t>& file_rows = meta.x_rows;
  LETHE_CHECK(file_rows.empty() ? meta.streamed->rows() == meta.n
                                : static_cast<int64_t>(file_rows.size()) == meta.n);
  const bool all = rows.empty();
  const int64_t n = all ? meta.n : static_cast<int64_t>(rows.size());
  auto file_row = [&](int64_t r) { return file_rows.empty() ? r : file_rows[r]; };
  std::vector<int64_t> selected;  // empty: the identity
  if (!all || !file_rows.empty()) {
    selected.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) selected[i] = file_row(all ? i : rows[i]);
  }
  DeviceData<T> out;
  out.source = std::make_shared<StreamedRows<T>>(backend, meta.streamed, std::move(selected));
  out.Y = backend.Allocate(n, meta.target_width);
  std::vector<T> y(static_cast<size_t>(n * meta.target_width));
  for (int64_t i = 0; i < n; ++i) {
    const double* from = meta.y.data() + (all ? i : rows[i]) * meta.target_width;
    std::copy(from, from + meta.target_width, y.begin() + i * meta.target_width);
  }
  backend.Upload(y.data(), out.Y);
  return out;
}

template class StreamedRows<float>;
template class StreamedRows<double>;
template DeviceData<float> UploadStreamed<float>(kernels::Backend<float>&, const io::Dataset&,
                                                 const std::vector<int64_t>&);
template DeviceData<double> UploadStreamed<double>(kernels::Backend<double>&, const io::Dataset&,
                                                   const std::vector<int64_t>&);

}  // namespace lethe
