#include "engine/kept_data.h"

#include <algorithm>
#include <utility>

#include "common/error.h"

namespace lethe {

template <typename T>
KeptData<T>::KeptData(kernels::Backend<T>& backend, const io::Dataset& data,
                      std::vector<int64_t> rows)
    : backend_(backend), rows_(std::move(rows)) {
  LETHE_CHECK(!data.streamed, "KeptData holds data in memory only");
  LETHE_CHECK(!rows_.empty(), "KeptData of no rows");  // (UploadData reads {} as every row)
  LETHE_CHECK(std::is_sorted(rows_.begin(), rows_.end()) &&
              std::adjacent_find(rows_.begin(), rows_.end()) == rows_.end());
  held_ = UploadData(backend, data, rows_);
}

template <typename T>
void KeptData<T>::Erase(std::vector<int64_t> rows) {
  if (rows.empty()) return;
  // Dataset rows → positions in the held buffers (rows_ is sorted, so are the positions).
  std::sort(rows.begin(), rows.end());
  std::vector<int64_t> at;
  at.reserve(rows.size());
  for (int64_t row : rows) {
    const auto it = std::lower_bound(rows_.begin(), rows_.end(), row);
    LETHE_CHECK(it != rows_.end() && *it == row && (at.empty() || it - rows_.begin() > at.back()),
                "row ", row, " is not held (or given twice)");
    at.push_back(it - rows_.begin());
  }
  const int64_t n = static_cast<int64_t>(rows_.size()), count = static_cast<int64_t>(at.size());
  backend_.EraseRows(held_.X.Rows(0, n), at.data(), count);
  backend_.EraseRows(held_.Y.Rows(0, n), at.data(), count);
  for (int64_t j = count - 1; j >= 0; --j) rows_.erase(rows_.begin() + at[j]);
}

template <typename T>
DeviceData<T> KeptData<T>::View() const {
  const int64_t n = static_cast<int64_t>(rows_.size());
  DeviceData<T> view;
  view.X = held_.X.Rows(0, n);
  view.Y = held_.Y.Rows(0, n);
  return view;
}

template class KeptData<float>;
template class KeptData<double>;

}  // namespace lethe
